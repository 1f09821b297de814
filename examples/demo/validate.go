package demo

// LuhnValid reports whether digits is a string of at least two ASCII digits
// whose last digit is a correct Luhn (mod 10) check digit, as on payment card
// numbers. Spaces, dashes and other separators make it return false.
func LuhnValid(digits string) bool {
	if len(digits) < 2 || !allDigits(digits) {
		return false
	}
	return luhnSum(digits, false)%10 == 0
}

// luhnSum adds up digits from the right, doubling every second digit; the
// rightmost digit is doubled when doubleFirst is set.
func luhnSum(digits string, doubleFirst bool) int {
	sum, double := 0, doubleFirst
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum
}

// luhnCheckDigit returns the digit that makes payload+digit Luhn-valid.
func luhnCheckDigit(payload string) byte {
	return byte('0' + (10-luhnSum(payload, true)%10)%10)
}

// IBANValid reports whether iban is a well-formed International Bank Account
// Number in electronic format (ISO 13616): uppercase letters and digits only,
// no spaces; a two-letter country code; check digits 02 to 98; the registered
// length for the country where it is known (15 to 34 characters otherwise);
// and a mod-97 remainder of 1.
func IBANValid(iban string) bool {
	if len(iban) < 15 || len(iban) > 34 {
		return false
	}
	if !isUpper(iban[0]) || !isUpper(iban[1]) || !isDigit(iban[2]) || !isDigit(iban[3]) {
		return false
	}
	if want, ok := ibanLengths[iban[:2]]; ok && len(iban) != want {
		return false
	}
	if check := iban[2:4]; check == "00" || check == "01" || check == "99" {
		return false
	}
	for i := 4; i < len(iban); i++ {
		if !isUpper(iban[i]) && !isDigit(iban[i]) {
			return false
		}
	}
	return mod97(iban[4:]+iban[:4]) == 1
}

// ibanCheckDigits returns the two check digits for an IBAN of the given
// country and BBAN.
func ibanCheckDigits(country, bban string) string {
	c := 98 - mod97(bban+country+"00")
	return string([]byte{byte('0' + c/10), byte('0' + c%10)})
}

// mod97 returns the remainder modulo 97 of s read as a number, each letter
// standing for two digits (A = 10 ... Z = 35). s holds only uppercase letters
// and digits.
func mod97(s string) int {
	rem := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	return rem
}

// ibanLengths is the IBAN length per country from the SWIFT IBAN registry.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
	"BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
	"DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
	"FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
	"GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
	"LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
	"MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
	"PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
	"SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
	"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
	"YE": 30,
}

// ABAValid reports whether routing is a 9-digit ABA routing transit number
// whose digits, weighted 3, 7, 1 repeating, sum to a multiple of 10. The
// all-zero number is rejected; the prefix ranges assigned by the ABA are not
// checked.
func ABAValid(routing string) bool {
	if len(routing) != 9 || !allDigits(routing) || routing == "000000000" {
		return false
	}
	return abaSum(routing)%10 == 0
}

var abaWeights = [9]int{3, 7, 1, 3, 7, 1, 3, 7, 1}

// abaSum returns the weighted sum of up to nine digits.
func abaSum(digits string) int {
	sum := 0
	for i := 0; i < len(digits); i++ {
		sum += abaWeights[i] * int(digits[i]-'0')
	}
	return sum
}

// abaCheckDigit returns the ninth digit that makes the 8-digit payload a
// valid routing number.
func abaCheckDigit(payload string) byte {
	return byte('0' + (10-abaSum(payload)%10)%10)
}

// ssnValid reports whether s is NNN-NN-NNNN with an area other than 000, 666
// and 900-999, a group other than 00 and a serial other than 0000.
func ssnValid(s string) bool {
	if len(s) != 11 || s[3] != '-' || s[6] != '-' {
		return false
	}
	area, group, serial := s[0:3], s[4:6], s[7:11]
	if !allDigits(area) || !allDigits(group) || !allDigits(serial) {
		return false
	}
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
