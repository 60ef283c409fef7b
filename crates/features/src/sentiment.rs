//! A small lexicon-based sentiment scorer for customer-service messages: a text in, a score in
//! `[-1, 1]` out (negative: unhappy, positive: happy, about 0: neutral or mixed).
//!
//! The lexicon (`data/sentiment_lexicon.txt`, English) lists sentiment words with a valence in
//! `-4..4`, negators and intensifiers. A message is lowercased and split into words (apostrophes
//! dropped, so "don't" is "dont"); then, for every sentiment word:
//!
//! - an intensifier right before it (or two words before, e.g. "very very") multiplies its
//!   valence by the intensifier's factor ("very good" 1.5 x, "slightly late" 0.5 x);
//! - a negator among the three words before it, in the same clause, flips it and halves it
//!   ("not good" is mildly negative, not as bad as "bad");
//! - after a "but" in the clause, words count 1.5 x, and before it 0.5 x ("the app is nice but
//!   the delivery was terrible" is negative);
//! - each "!" in the message (at most 3) strengthens the sum by 10%.
//!
//! The sum `s` is squashed to `s / sqrt(s² + 15)` (VADER's normalisation), so one strong word
//! scores about ±0.6 and more words push towards ±1. Accuracy on the labelled messages in
//! `data/sentiment_examples.jsonl` is in docs/ASSISTANT.md (a test keeps it).

use std::collections::HashMap;
use std::sync::OnceLock;

/// The lexicon file, built in.
pub const LEXICON: &str = include_str!("../data/sentiment_lexicon.txt");

/// Scores below `-NEUTRAL_BAND` are negative, above it positive, within it neutral.
pub const NEUTRAL_BAND: f64 = 0.05;

const NORMALISATION: f64 = 15.0;
const NEGATION_FACTOR: f64 = -0.5;
const NEGATION_REACH: usize = 3;

#[derive(Debug, Default)]
struct Lexicon {
    words: HashMap<String, f64>,
    negators: Vec<String>,
    intensifiers: HashMap<String, f64>,
}

fn parse(text: &str) -> Lexicon {
    let mut lex = Lexicon::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["word", w, v] => {
                if let Ok(v) = v.parse::<f64>() {
                    lex.words.insert((*w).to_owned(), v);
                }
            }
            ["negator", w] => lex.negators.push((*w).to_owned()),
            ["intensifier", w, f] => {
                if let Ok(f) = f.parse::<f64>() {
                    lex.intensifiers.insert((*w).to_owned(), f);
                }
            }
            _ => {}
        }
    }
    lex
}

fn lexicon() -> &'static Lexicon {
    static LEX: OnceLock<Lexicon> = OnceLock::new();
    LEX.get_or_init(|| parse(LEXICON))
}

/// A token: a lowercase word, or a clause break (`.`, `,`, `;`, `?`, `!`, `:`).
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Break,
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if c == '\'' || c == '’' {
            // "don't" -> "dont"
        } else {
            flush(&mut word, &mut out);
            if matches!(c, '.' | ',' | ';' | '?' | '!' | ':') {
                out.push(Token::Break);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The sentiment of `text`, in `[-1, 1]`; 0 for a text without sentiment words.
pub fn score(text: &str) -> f64 {
    let lex = lexicon();
    let tokens = tokenize(text);
    let mut sum = 0.0;
    // Clause by clause (between breaks), so negation and "but" stay within their clause.
    for clause in tokens.split(|t| *t == Token::Break) {
        let words: Vec<&str> = clause
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                Token::Break => None,
            })
            .collect();
        let but = words.iter().position(|w| *w == "but");
        for (i, w) in words.iter().enumerate() {
            let Some(&valence) = lex.words.get(*w) else { continue };
            let mut v = valence;
            for back in 1..=2 {
                match i.checked_sub(back).and_then(|j| lex.intensifiers.get(words[j])) {
                    Some(f) => v *= f,
                    None => break,
                }
            }
            let negated = (1..=NEGATION_REACH)
                .filter_map(|back| i.checked_sub(back))
                .any(|j| lex.negators.iter().any(|n| n == words[j]));
            if negated {
                v *= NEGATION_FACTOR;
            }
            match but {
                Some(b) if i > b => v *= 1.5,
                Some(b) if i < b => v *= 0.5,
                _ => {}
            }
            sum += v;
        }
    }
    let bangs = text.chars().filter(|c| *c == '!').count().min(3);
    sum *= 1.0 + 0.1 * bangs as f64;
    if sum == 0.0 {
        return 0.0;
    }
    (sum / (sum * sum + NORMALISATION).sqrt()).clamp(-1.0, 1.0)
}

/// `score` as a label: `negative`, `neutral` or `positive` ([`NEUTRAL_BAND`]).
pub fn label(score: f64) -> &'static str {
    if score < -NEUTRAL_BAND {
        "negative"
    } else if score > NEUTRAL_BAND {
        "positive"
    } else {
        "neutral"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn negation_intensifiers_and_but_change_the_score() {
        let good = score("the delivery was good");
        assert!(good > 0.3, "{good}");
        assert!(score("the delivery was very good") > good);
        let not_good = score("the delivery was not good");
        assert!(not_good < 0.0 && not_good > score("the delivery was bad"), "{not_good}");
        assert!(score("the delivery was slightly late") > score("the delivery was late"));
        assert!(score("the shop is nice but the delivery was terrible") < 0.0);
        assert!(score("I don't love it") < 0.0);
        assert_eq!(score("where is my order 123"), 0.0);
        assert!(score("great!!!") > score("great"));
        assert!((-1.0..=1.0).contains(&score("terrible awful horrible worst nightmare scam fraud")));
    }

    #[derive(serde::Deserialize)]
    struct Labelled {
        text: String,
        label: String,
    }

    /// The accuracy docs/ASSISTANT.md reports.
    #[test]
    fn labelled_examples_are_scored_with_the_documented_accuracy() {
        let examples: Vec<Labelled> = include_str!("../data/sentiment_examples.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let wrong: Vec<(&str, &str, f64)> = examples
            .iter()
            .filter_map(|e| {
                let s = score(&e.text);
                (label(s) != e.label).then_some((e.text.as_str(), e.label.as_str(), s))
            })
            .collect();
        let accuracy = 1.0 - wrong.len() as f64 / examples.len() as f64;
        println!("sentiment accuracy {accuracy:.3} on {} examples; wrong: {wrong:#?}", examples.len());
        assert!(examples.len() >= 60);
        assert!(accuracy >= 0.85, "accuracy {accuracy:.3}; wrong: {wrong:#?}");
    }
}
