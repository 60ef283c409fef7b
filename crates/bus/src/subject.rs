/// Whether `subject` matches `pattern` under NATS rules: tokens separated by `.`, `*` matches
/// exactly one token, `>` (last) matches one or more tokens.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a subject to publish to is valid: non-empty tokens, no wildcards, no whitespace.
pub(crate) fn valid_publish_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(subject_matches("sm.events.>", "sm.events.acme.product_viewed"));
        assert!(!subject_matches("sm.events.>", "sm.events"));
        assert!(subject_matches("sm.events.*.order_placed", "sm.events.acme.order_placed"));
        assert!(!subject_matches("sm.events.*.order_placed", "sm.events.acme.x.order_placed"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn publish_subjects() {
        assert!(valid_publish_subject("sm.events.acme.x"));
        assert!(!valid_publish_subject("sm.*.x"));
        assert!(!valid_publish_subject("sm..x"));
        assert!(!valid_publish_subject("sm.a b"));
        assert!(!valid_publish_subject(""));
    }
}
