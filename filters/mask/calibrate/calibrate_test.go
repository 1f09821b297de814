package calibrate

import "testing"

func TestCards(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"4111111111111111", 1},
		{"card 4111111111111111, again 4111111111111111.", 2},
		{"4111111111111112", 0},     // Luhn fails
		{"411111111111", 0},         // 12 digits
		{"41111111111111111111", 0}, // 20 digits
		{"4111-1111-1111-1111", 0},  // separators: the naive scanner misses it
		{"x5555555555554444y", 1},
	} {
		if got := Cards([]byte(c.in)); got != c.want {
			t.Errorf("Cards(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
