package engine

import "sort"

// builtin are the built-in profiles CONTRACT.md names.
var builtin = map[string][]string{
	"pci":     {Card, IBAN, ABA, SSN, Account},
	"secrets": {Bearer, AzureKey, SAS, PrivateKey},
	"pii":     {Email, Phone},
	"all":     {Card, IBAN, ABA, SSN, Account, Bearer, AzureKey, SAS, PrivateKey, Email, Phone},
}

// Builtin returns the configuration of a built-in profile: pci, secrets,
// pii or all.
func Builtin(name string) (Config, bool) {
	e, ok := builtin[name]
	if !ok {
		return Config{}, false
	}
	return Config{Entities: append([]string(nil), e...)}, true
}

// BuiltinNames lists the built-in profiles, sorted.
func BuiltinNames() []string {
	var n []string
	for k := range builtin {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Entities lists the built-in entities, in their id order.
func Entities() []string { return append([]string(nil), builtinNames[:]...) }
