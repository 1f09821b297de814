package engine

// The checksums and number rules each detector validates with. Each takes
// ASCII digits (or, for IBAN, upper-case letters and digits) without
// separators.

// luhn reports whether the digits pass the Luhn (mod 10) check.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// cardPrefix reports whether d starts as an issued card number does: the
// major industry identifiers 2 (Mastercard 2-series), 3 (Amex, Diners, JCB),
// 4 (Visa), 5 (Mastercard, Maestro) and 6 (Discover, UnionPay, Maestro).
func cardPrefix(d []byte) bool { return d[0] >= '2' && d[0] <= '6' }

// abaValid reports whether nine digits are an ABA routing transit number:
// the 3-7-1 checksum and a Federal Reserve prefix (00-12, 21-32, 61-72, 80).
func abaValid(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	p := int(d[0]-'0')*10 + int(d[1]-'0')
	if !(p <= 12 || (p >= 21 && p <= 32) || (p >= 61 && p <= 72) || p == 80) {
		return false
	}
	n := func(i int) int { return int(d[i] - '0') }
	sum := 3*(n(0)+n(3)+n(6)) + 7*(n(1)+n(4)+n(7)) + (n(2) + n(5) + n(8))
	if sum == 0 {
		return false
	}
	return sum%10 == 0
}

// ssnValid reports whether nine digits are a possible US social security
// number: area not 000, 666 or 9xx; group not 00; serial not 0000.
func ssnValid(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	area := string(d[0:3])
	if area == "000" || area == "666" || d[0] == '9' {
		return false
	}
	if d[3] == '0' && d[4] == '0' {
		return false
	}
	return !(d[5] == '0' && d[6] == '0' && d[7] == '0' && d[8] == '0')
}

// nanpValid reports whether ten digits are a North American number: area
// code and exchange start with 2-9.
func nanpValid(d []byte) bool {
	return len(d) == 10 && d[0] >= '2' && d[3] >= '2'
}

// ibanLength is the length of an IBAN per country (SWIFT IBAN registry).
var ibanLength = map[[2]byte]int{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28,
	{'B', 'A'}: 20, {'B', 'E'}: 16, {'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27,
	{'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22, {'C', 'Y'}: 28,
	{'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27, {'D', 'K'}: 18, {'D', 'O'}: 28,
	{'E', 'E'}: 20, {'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18, {'F', 'K'}: 18,
	{'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22, {'G', 'E'}: 22, {'G', 'I'}: 23,
	{'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'N'}: 28, {'H', 'R'}: 21,
	{'H', 'U'}: 28, {'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26,
	{'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30, {'K', 'Z'}: 20, {'L', 'B'}: 28,
	{'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20, {'L', 'V'}: 21,
	{'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19,
	{'M', 'N'}: 20, {'M', 'R'}: 27, {'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28,
	{'N', 'L'}: 18, {'N', 'O'}: 15, {'O', 'M'}: 23, {'P', 'K'}: 24, {'P', 'L'}: 28,
	{'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22,
	{'R', 'U'}: 33, {'S', 'A'}: 24, {'S', 'C'}: 31, {'S', 'D'}: 18, {'S', 'E'}: 24,
	{'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27, {'S', 'O'}: 23, {'S', 'T'}: 25,
	{'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29,
	{'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20, {'Y', 'E'}: 30,
}

// ibanValid reports whether s (upper-case letters and digits, no spaces,
// already of its country's length) passes the ISO 13616 mod-97 check.
func ibanValid(s []byte) bool {
	if len(s) < 15 || s[2] < '0' || s[2] > '9' || s[3] < '0' || s[3] > '9' {
		return false
	}
	r := 0
	add := func(c byte) {
		switch {
		case c >= '0' && c <= '9':
			r = (r*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			v := int(c-'A') + 10
			r = (r*100 + v) % 97
		}
	}
	for _, c := range s[4:] {
		add(c)
	}
	for _, c := range s[:4] {
		add(c)
	}
	return r == 1
}
