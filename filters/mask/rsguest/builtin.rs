//! The built-in profiles, as engine/builtin.go (the host sends their
//! entities in the profile; kept for the tests).

#[allow(dead_code)]
pub fn builtin(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "pci" => Some(&["card", "iban", "aba", "ssn", "account"]),
        "secrets" => Some(&["bearer", "azure_key", "sas", "private_key"]),
        "pii" => Some(&["email", "phone"]),
        "all" => Some(&[
            "card", "iban", "aba", "ssn", "account", "bearer", "azure_key", "sas", "private_key", "email", "phone",
        ]),
        _ => None,
    }
}
