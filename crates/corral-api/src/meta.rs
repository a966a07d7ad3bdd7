//! Admission helpers the API server uses on every write: timestamps, uids, `generateName`, and
//! whether a change touches the spec (which bumps `metadata.generation`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Kubernetes' alphabet for generated name suffixes: no vowels (no accidental words) and no
/// look-alike characters.
pub const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the random suffix of a generated name.
pub const RANDOM_SUFFIX_LEN: usize = 5;
/// The longest prefix kept from `generateName`, so the result stays a valid 63-character name.
pub const MAX_GENERATE_NAME_PREFIX: usize = 63 - RANDOM_SUFFIX_LEN;

/// The current time as RFC 3339 in UTC with seconds precision: `2025-01-31T12:00:00Z`.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .expect("the current time truncated to seconds is a valid timestamp")
        .to_string()
}

/// A fresh random uid (UUID v4, hyphenated lowercase).
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `prefix` (cut to [`MAX_GENERATE_NAME_PREFIX`] characters) followed by five random characters of
/// [`NAME_ALPHABET`], as Kubernetes does for `metadata.generateName`.
pub fn generate_name(prefix: &str) -> String {
    let prefix: String = prefix.chars().take(MAX_GENERATE_NAME_PREFIX).collect();
    // A v4 uuid carries 122 random bits; its first six bytes are entirely random.
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..RANDOM_SUFFIX_LEN]
        .iter()
        .map(|b| char::from(NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

/// Whether anything other than `metadata` and `status` differs between the two versions of an
/// object: only such a change bumps `metadata.generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    match (old.as_object(), new.as_object()) {
        (Some(old), Some(new)) => {
            let relevant = |key: &String| key != "metadata" && key != "status";
            let old_fields: BTreeMap<_, _> = old.iter().filter(|(k, _)| relevant(k)).collect();
            let new_fields: BTreeMap<_, _> = new.iter().filter(|(k, _)| relevant(k)).collect();
            old_fields != new_fields
        }
        _ => old != new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_rfc3339_seconds_in_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2025-01-31T12:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
        assert!(now.parse::<jiff::Timestamp>().is_ok(), "{now}");
    }

    #[test]
    fn uids_are_unique_uuids() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn generated_names_add_five_characters_from_the_alphabet() {
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        assert!(
            name[4..].bytes().all(|b| NAME_ALPHABET.contains(&b)),
            "{name}"
        );
        assert_ne!(generate_name("web-"), generate_name("web-"));
        let long = generate_name(&"a".repeat(100));
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn only_changes_outside_metadata_and_status_count_as_spec_changes() {
        let base = json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}, "status": {}});
        let table = [
            (
                json!({"kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"replicas": 1}, "status": {}}),
                false,
            ),
            (
                json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}, "status": {"replicas": 3}}),
                false,
            ),
            (
                json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 2}, "status": {}}),
                true,
            ),
            (
                json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}}),
                false,
            ),
            (
                json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}, "data": {}}),
                true,
            ),
        ];
        for (new, want) in table {
            assert_eq!(spec_changed(&base, &new), want, "{new}");
        }
    }
}
