//! PII redaction of free text.
//!
//! [`redact`] replaces each piece of personal data it recognises by a typed placeholder
//! (`[email]`, `[card]`, ...). Patterns run one after another, each on the output of the one
//! before (placeholders hold no digits or `@`, so a later pattern never matches inside one):
//!
//! | kind | placeholder | recognised |
//! |---|---|---|
//! | email | `[email]` | `local@domain.tld` |
//! | IBAN | `[iban]` | two letters, two check digits, 11-30 more letters/digits (groups of 4 may be spaced), ISO 7064 mod-97 valid |
//! | card | `[card]` | 13-19 digits (groups separated by spaces or dashes) passing the Luhn check |
//! | national id | `[national_id]` | `ddd-dd-dddd` (US SSN shape) |
//! | IP address | `[ip]` | dotted IPv4 |
//! | phone | `[phone]` | 7-15 digits with `+`/`00`/`(` in front, or a national number starting with 0 (9+ digits), or `ddd-ddd-dddd`; not glued to a letter, `-`, `#`, `/`, `_`, `.`, `:` or a currency sign in front |
//! | address | `[address]` | a house number and capitalised words ending in a street word (`12 Baker Street`, `1600 Pennsylvania Ave`), `<name>straße 5` / `Rue`/`Via`/`Calle` forms |
//!
//! Order ids (`ord-1042`, `#A-2024-000123`), prices (`€1,299.00`, `19.99`), quantities, dates
//! and times are left alone; `tests` below checks both directions on many cases.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data [`redact`] masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Iban,
    Card,
    NationalId,
    IpAddress,
    Phone,
    Address,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Iban => "iban",
            Self::Card => "card",
            Self::NationalId => "national_id",
            Self::IpAddress => "ip",
            Self::Phone => "phone",
            Self::Address => "address",
        }
    }

    /// What replaces it in the text: `[<kind>]`.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Email => "[email]",
            Self::Iban => "[iban]",
            Self::Card => "[card]",
            Self::NationalId => "[national_id]",
            Self::IpAddress => "[ip]",
            Self::Phone => "[phone]",
            Self::Address => "[address]",
        }
    }
}

/// Text with its PII masked, and what was masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// How many pieces of each kind were masked.
    pub found: BTreeMap<PiiKind, usize>,
}

impl Redacted {
    /// Pieces masked, all kinds together.
    pub fn count(&self) -> usize {
        self.found.values().sum()
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants checked by the tests; an invalid one is a programming error
    // caught there, never at run time in a service.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("valid PII pattern")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}\b",
    )
});
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"));
/// A run of digits, possibly in groups separated by one space or dash (card candidates).
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9]+(?:[ \-][0-9]+)*\b"));
static NATIONAL_ID: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b",
    )
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:\+ ?|\(\+?)?[0-9][0-9 ().\-/]{5,24}[0-9]"));
static NANP: LazyLock<Regex> = LazyLock::new(|| re(r"^\(?[0-9]{3}\)?[ .\-]?[0-9]{3}[ .\-][0-9]{4}$"));
static ADDRESS_EN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b[0-9]{1,5}[A-Za-z]?,?(?: [A-Z][A-Za-z'\-]*){1,4} (?:(?i:street|avenue|road|boulevard|lane|drive|court|way|place|terrace|square|parkway|highway|crescent|close|row|mews)\b|(?i:st|ave|rd|blvd|ln|dr|ct|pl|sq|pkwy|hwy)\b\.?)",
    )
});
static ADDRESS_DE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b[A-ZÄÖÜ][a-zäöüß\-]+(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|ufer|laan|straat|gracht|gatan|vej)(?: [0-9]{1,4}[a-z]?\b)|\b[A-ZÄÖÜ][a-zäöüß\-]+ (?:Straße|Strasse|Str\.|Weg|Gasse|Allee|Platz) [0-9]{1,4}[a-z]?\b",
    )
});
static ADDRESS_ROMANCE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b[0-9]{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|boulevard|bd|place|chemin|impasse|quai|allée|via|viale|piazza|calle|avenida|rua|travessa)(?: (?:de|la|du|des|le|les|del|della|di|do|da|d'[A-Za-zÀ-ÿ]+|[A-ZÀ-Ý][A-Za-zÀ-ÿ'\-]*)){1,6}|\b(?i:via|calle|rua|carrer|avenida) (?:(?:de|del|della|di|do|da|la) )?[A-ZÀ-Ý][A-Za-zÀ-ÿ'\-]*(?: [A-ZÀ-Ý][A-Za-zÀ-ÿ'\-]*)*,? [0-9]{1,4}\b",
    )
});

/// Masks the personal data in `text` (see the module docs for what is recognised).
pub fn redact(text: &str) -> Redacted {
    let mut found = BTreeMap::new();
    let mut text = replace(&EMAIL, text, PiiKind::Email, &mut found, |_, _| true);
    text = replace(&IBAN, &text, PiiKind::Iban, &mut found, |m, _| iban_valid(m));
    text = mask_cards(&text, &mut found);
    text = replace(&NATIONAL_ID, &text, PiiKind::NationalId, &mut found, |_, _| true);
    text = replace(&IPV4, &text, PiiKind::IpAddress, &mut found, |_, _| true);
    text = replace(&PHONE, &text, PiiKind::Phone, &mut found, is_phone);
    for pattern in [&*ADDRESS_EN, &*ADDRESS_DE, &*ADDRESS_ROMANCE] {
        text = replace(pattern, &text, PiiKind::Address, &mut found, |_, _| true);
    }
    Redacted { text, found }
}

/// Replaces the matches of `pattern` that `accept(match, text before it)` accepts.
fn replace(
    pattern: &Regex,
    text: &str,
    kind: PiiKind,
    found: &mut BTreeMap<PiiKind, usize>,
    accept: impl Fn(&str, &str) -> bool,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in pattern.find_iter(text) {
        if !accept(m.as_str(), &text[..m.start()]) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(kind.placeholder());
        *found.entry(kind).or_insert(0) += 1;
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Masks card numbers inside runs of digit groups: the first (then longest) sequence of whole
/// consecutive groups holding 13-19 digits that passes the Luhn check, repeatedly, so that a
/// card number followed by an expiry date or a CVC is still found.
fn mask_cards(text: &str, found: &mut BTreeMap<PiiKind, usize>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for run in DIGIT_RUN.find_iter(text) {
        // Group spans (byte offsets into `text`).
        let mut groups = Vec::new();
        let mut start = None;
        for (i, c) in run.as_str().char_indices() {
            match (c.is_ascii_digit(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    groups.push((run.start() + s, run.start() + i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            groups.push((run.start() + s, run.end()));
        }
        let mut g = 0;
        while g < groups.len() {
            let mut hit = None;
            let mut digits = 0;
            for (h, &(_, end)) in groups.iter().enumerate().skip(g) {
                digits += end - groups[h].0;
                if digits > 19 {
                    break;
                }
                if digits >= 13 && luhn_valid(&text[groups[g].0..end]) {
                    hit = Some((h, end));
                }
            }
            match hit {
                Some((h, end)) => {
                    out.push_str(&text[last..groups[g].0]);
                    out.push_str(PiiKind::Card.placeholder());
                    *found.entry(PiiKind::Card).or_insert(0) += 1;
                    last = end;
                    g = h + 1;
                }
                None => g += 1,
            }
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The Luhn check over the digits of `s` (other characters skipped).
fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 13 || digits.iter().all(|&d| d == 0) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 / ISO 7064 mod-97 check of an IBAN (spaces skipped).
fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// Whether a phone candidate (see `PHONE`) is a phone number, given the text before it.
fn is_phone(candidate: &str, before: &str) -> bool {
    // Glued to an id, a price or a path: `ord-0176...`, `#0049...`, `€0123...`, `v1.2...`.
    if let Some(prev) = before.chars().next_back()
        && (prev.is_alphanumeric() || "-_#/.:$€£¥,".contains(prev))
    {
        return false;
    }
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    // A decimal number (a price, a measurement): digits, one '.', two digits at the end.
    let trimmed = candidate.trim();
    if let Some((int, frac)) = trimmed.rsplit_once('.')
        && frac.len() <= 2
        && int.chars().all(|c| c.is_ascii_digit() || c == ',')
    {
        return false;
    }
    candidate.starts_with('+')
        || candidate.starts_with("00")
        || candidate.starts_with('(')
        || (candidate.starts_with('0') && digits >= 9)
        || NANP.is_match(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        redact(text).text
    }

    #[test]
    fn emails() {
        for (raw, want) in [
            ("alice@example.com", "[email]"),
            ("Contact: Bob.Smith+shop@mail.example.co.uk.", "Contact: [email]."),
            ("<j_doe-99@sub.domain.io>", "<[email]>"),
            ("two: a@b.de and c.d@e.fr", "two: [email] and [email]"),
        ] {
            assert_eq!(masked(raw), want, "{raw}");
        }
        for keep in ["@alice on twitter", "user@localhost", "price@19.99", "a @ b . com"] {
            assert_eq!(masked(keep), keep);
        }
    }

    #[test]
    fn cards_need_the_luhn_check() {
        for (raw, want) in [
            ("4111111111111111", "[card]"),
            ("my card 4111 1111 1111 1111 exp 12/27", "my card [card] exp 12/27"),
            ("5500-0000-0000-0004 cvc 123", "[card] cvc 123"),
            ("amex 3782 822463 10005", "amex [card]"),
            ("visa 4012888888881881, thanks", "visa [card], thanks"),
            ("card 4111 1111 1111 1111 2027", "card [card] 2027"),
            ("6011111111111117", "[card]"),
        ] {
            assert_eq!(masked(raw), want, "{raw}");
        }
        // Luhn-invalid 16 digit numbers, short numbers and zeros are not cards.
        for keep in [
            "4111 1111 1111 1112",
            "tracking 1234567812345678",
            "0000 0000 0000 0000",
            "ord-1042",
            "1234 5678",
        ] {
            assert_eq!(masked(keep), keep, "{keep}");
        }
    }

    #[test]
    fn ibans_need_the_mod97_check() {
        for (raw, want) in [
            ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [iban] please"),
            ("GB82WEST12345698765432", "[iban]"),
            ("refund to FR1420041010050500013M02606.", "refund to [iban]."),
        ] {
            assert_eq!(masked(raw), want, "{raw}");
        }
        for keep in ["DE00 3704 0044 0532 0130 00", "SKU AB12CDEF3456GH", "size EU42 width"] {
            assert_eq!(masked(keep), keep, "{keep}");
        }
    }

    #[test]
    fn phone_numbers() {
        for (raw, want) in [
            ("call me on +49 30 1234567", "call me on [phone]"),
            ("+1 (555) 123-4567 after 5pm", "[phone] after 5pm"),
            ("tel 0049 30 123 456 78", "tel [phone]"),
            ("mobile 0176-12345678.", "mobile [phone]."),
            ("(030) 1234 5678", "[phone]"),
            ("at 555-123-4567 or 555.987.6543", "at [phone] or [phone]"),
            ("+442071838750", "[phone]"),
            ("07700 900123", "[phone]"),
        ] {
            assert_eq!(masked(raw), want, "{raw}");
        }
    }

    #[test]
    fn order_ids_prices_dates_and_quantities_stay() {
        for keep in [
            "Where is my order ord-1042?",
            "order #A-2024-000123 arrived broken",
            "ORD-2024-0000123456",
            "it cost €1,299.00 and the other 19.99 EUR",
            "price 1299.99, was 1499.99",
            "$12,345,678.90",
            "ordered 2 items on 2024-05-12 at 10:30",
            "delivery 12/05/2024",
            "qty 3, size 42, colour navy",
            "item sku-00123456789 and item_0012345678",
            "version v1.2.3.4 of the app",
            "I ordered 3 shirts the wrong way",
            "tracking 1Z999AA10123456784",
            "1042",
            "refund of 100 for ord-0176123456",
            "",
        ] {
            let r = redact(keep);
            assert_eq!(r.text, keep, "{keep}");
            assert_eq!(r.count(), 0);
        }
    }

    #[test]
    fn addresses() {
        for (raw, want) in [
            ("ship to 221B Baker Street, London", "ship to [address], London"),
            ("1600 Pennsylvania Ave NW", "[address] NW"),
            ("I live at 42 Elm St. now", "I live at [address] now"),
            ("Hauptstraße 5a, 10115 Berlin", "[address], 10115 Berlin"),
            ("Berliner Allee 12", "[address]"),
            ("12 rue de la Paix, Paris", "[address], Paris"),
            ("Via Roma 10, Milano", "[address], Milano"),
            ("Calle Mayor 3", "[address]"),
        ] {
            assert_eq!(masked(raw), want, "{raw}");
        }
        for keep in ["I bought 2 Blue Shirts", "Route 66 is long", "the street was wet"] {
            assert_eq!(masked(keep), keep, "{keep}");
        }
    }

    #[test]
    fn other_identifiers() {
        assert_eq!(masked("SSN 123-45-6789"), "SSN [national_id]");
        assert_eq!(masked("from 192.168.1.20"), "from [ip]");
        assert_eq!(masked("from 999.1.1.1"), "from 999.1.1.1");
    }

    #[test]
    fn a_message_full_of_pii() {
        let r = redact(
            "Hi, I'm Alice (alice.smith@example.com, +44 20 7946 0958). Order ord-1042 for €59.90 \
             went to 10 Downing Street. Refund to card 4111-1111-1111-1111 or IBAN GB82 WEST 1234 5698 \
             7654 32.",
        );
        assert_eq!(
            r.text,
            "Hi, I'm Alice ([email], [phone]). Order ord-1042 for €59.90 went to [address]. Refund to \
             card [card] or IBAN [iban]."
        );
        assert_eq!(r.count(), 5);
        for kind in [PiiKind::Email, PiiKind::Phone, PiiKind::Address, PiiKind::Card, PiiKind::Iban] {
            assert_eq!(r.found.get(&kind), Some(&1), "{kind:?}");
        }
    }

    #[test]
    fn checksums() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(!iban_valid("DE88 3704 0044 0532 0130 00"));
    }
}
