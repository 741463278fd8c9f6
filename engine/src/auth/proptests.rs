//! Property tests: the byte-facing parsers of this module never panic, whatever they are given,
//! and their answers stay within their contracts (line numbers within the file).

use proptest::prelude::*;

use super::{apikey, bearer_token};

proptest! {
    #[test]
    fn key_files_never_panic_and_name_real_lines(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let lines = bytes.split(|&b| b == b'\n').count();
        match apikey::parse_key_file(&bytes) {
            Ok(entries) => prop_assert!(entries.len() <= lines),
            Err(errors) => {
                prop_assert!(!errors.is_empty() && errors.len() <= apikey::MAX_REPORTED_ERRORS);
                for error in errors {
                    prop_assert!(error.line >= 1 && error.line <= lines);
                }
            }
        }
    }

    #[test]
    fn key_files_of_valid_lines_parse(pairs in proptest::collection::vec(("[a-z]{1,12}", "[!-~]{16,40}"), 1..20)) {
        let mut file = String::new();
        let mut keys = std::collections::HashSet::new();
        for (identity, key) in &pairs {
            if keys.insert(key.clone()) {
                file.push_str(&format!("{identity} {key}\n"));
            }
        }
        let entries = apikey::parse_key_file(file.as_bytes()).expect("valid lines");
        prop_assert_eq!(entries.len(), keys.len());
        let set = apikey::ApiKeys::new(entries).expect("distinct keys");
        for (identity, key) in &pairs {
            // Keys listed twice belong to their first identity.
            let found = set.identify(key.as_bytes());
            prop_assert!(found.is_some());
            if pairs.iter().filter(|(_, k)| k == key).count() == 1 {
                prop_assert_eq!(found, Some(identity.as_str()));
            }
        }
    }

    #[test]
    fn authorization_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Some(token) = bearer_token(&value) {
            prop_assert!(!token.is_empty());
        }
    }
}
