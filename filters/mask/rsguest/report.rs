//! The report, as engine/report.go's AppendReport: what a call masked, in
//! the ABI's wire form (counts per entity and operator, pointers, dropped).

use crate::config::*;
use crate::masker::*;

impl Masker {
    /// Appends the last call's report in the ABI's wire form.
    pub fn append_report(&self, dst: &mut Vec<u8>, p: &Profile) {
        let mut used = self.used;
        while used != 0 {
            let e = used.trailing_zeros() as usize;
            used &= used - 1;
            if e >= p.names.len() {
                continue;
            }
            for (op, &c) in self.counts[e].iter().enumerate() {
                if c > 0 {
                    dst.push(b'c');
                    append_bytes(dst, &p.names[e]);
                    append_bytes(dst, OP_NAMES[op].as_bytes());
                    append_uvarint(dst, c as u64);
                }
            }
        }
        // the pointers are kept as records already
        dst.extend_from_slice(&self.ptr_data);
        if self.dropped > 0 {
            dst.push(b'd');
            append_uvarint(dst, self.dropped as u64);
        }
    }
}
