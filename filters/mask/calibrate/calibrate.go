// Package calibrate is the yardstick issue 15 measured its speed goal
// against: a naive card-only scanner (runs of digits, Luhn), in Go, timed
// natively and, built from guest/ for GOOS=wasip1, under wazero. The same
// machine runs it beside the masking engines (BenchmarkCalibration in
// filters/mask), so figures taken on a slower or busier machine than the
// issue's can be read against the 47 MB/s (1 KB in 21 µs) it measured.
package calibrate

// Cards counts the runs of 13 to 19 digits in b that pass the Luhn check:
// the whole of the naive scanner, no separators, no context, no masking.
func Cards(b []byte) int {
	n, start := 0, -1
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if l := i - start; l >= 13 && l <= 19 && Luhn(b[start:i]) {
				n++
			}
			start = -1
		}
	}
	return n
}

// Luhn reports whether the ASCII digits d pass the Luhn check.
func Luhn(d []byte) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}
