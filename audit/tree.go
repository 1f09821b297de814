package audit

import "golang.org/x/mod/sumdb/tlog"

// frontier holds, for each level of the Merkle tree, the hash of the most
// recently completed subtree at that level: all that is needed to add a
// record and to compute the tree hash at the current size, without reading
// older hashes back from disk.
type frontier struct {
	h [64]tlog.Hash
}

// add adds record n with leaf hash leaf and appends the hashes that tlog
// stores for it (the leaf, then each subtree it completes) to out, in the
// order of tlog.StoredHashIndex.
func (f *frontier) add(n int64, leaf tlog.Hash, out []tlog.Hash) []tlog.Hash {
	h := leaf
	out = append(out, h)
	l := 0
	for ; (n>>l)&1 == 1; l++ {
		left := f.h[l]
		f.h[l] = h
		h = tlog.NodeHash(left, h)
		out = append(out, h)
	}
	f.h[l] = h
	return out
}

// root returns the tree hash of the first n records, n being the number of
// records added.
func (f *frontier) root(n int64) tlog.Hash {
	if n == 0 {
		return tlog.Hash{}
	}
	var h tlog.Hash
	first := true
	for l := 0; l < 64; l++ {
		if (n>>l)&1 == 0 {
			continue
		}
		if first {
			h, first = f.h[l], false
		} else {
			h = tlog.NodeHash(f.h[l], h)
		}
	}
	return h
}

// loadFrontier reads the frontier at size n from stored hashes.
func loadFrontier(n int64, r tlog.HashReader) (frontier, error) {
	var f frontier
	var idx []int64
	var lv []int
	for l := 0; l < 63; l++ {
		if k := n >> l; k > 0 {
			idx = append(idx, tlog.StoredHashIndex(l, k-1))
			lv = append(lv, l)
		}
	}
	if len(idx) == 0 {
		return f, nil
	}
	hs, err := r.ReadHashes(idx)
	if err != nil {
		return f, err
	}
	for i, l := range lv {
		f.h[l] = hs[i]
	}
	return f, nil
}
