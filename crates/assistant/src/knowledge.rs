//! A tenant's FAQ knowledge base: Markdown files split into entries at their `##` headings,
//! embedded once at load with the sentence encoder, retrieved by cosine similarity.
//!
//! A file's `#` heading is its title; every `##` section is one entry, cited as
//! `<file>#<slug of the heading>` (e.g. `shipping.md#how-long-does-delivery-take`). Text before
//! the first `##` heading is not an entry. Deeper headings stay inside their entry.

use std::path::Path;

use shopmind_encoder::SentenceEncoder;

use crate::classifier::encode_all;
use crate::error::{AssistantError, Result};

/// Longest snippet of an entry in a citation, in characters.
const SNIPPET_CHARS: usize = 160;

/// One FAQ entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaqEntry {
    /// `<file>#<slug>`.
    pub id: String,
    /// The file's `#` title, or its name without `.md`.
    pub document: String,
    /// The `##` heading.
    pub title: String,
    /// The section's text, trimmed.
    pub body: String,
}

impl FaqEntry {
    /// The start of the body, cut at a word boundary.
    pub fn snippet(&self) -> String {
        excerpt(&self.body, SNIPPET_CHARS)
    }

    /// What is embedded: the heading (usually a question) and the body.
    fn embedding_text(&self) -> String {
        format!("{}: {}. {}", self.document, self.title, self.body)
    }
}

/// At most `max` characters of `text`, cut at a word boundary, with "…" when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    let end = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", &cut[..end])
}

/// `How long does delivery take?` -> `how-long-does-delivery-take`.
pub fn slug(heading: &str) -> String {
    let mut out = String::new();
    for word in heading.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word.to_lowercase());
    }
    out
}

/// The entries of one Markdown file named `file` (its name in the FAQ directory).
pub fn parse_faq(file: &str, markdown: &str) -> Vec<FaqEntry> {
    let mut document = file.trim_end_matches(".md").to_owned();
    let mut entries = Vec::new();
    let mut current: Option<(String, String)> = None;
    let finish = |current: Option<(String, String)>, document: &str, entries: &mut Vec<FaqEntry>| {
        if let Some((title, body)) = current {
            let body = body.trim().to_owned();
            if !body.is_empty() {
                entries.push(FaqEntry {
                    id: format!("{file}#{}", slug(&title)),
                    document: document.to_owned(),
                    title,
                    body,
                });
            }
        }
    };
    for line in markdown.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            document = title.trim().to_owned();
        } else if let Some(heading) = line.strip_prefix("## ") {
            finish(current.take(), &document, &mut entries);
            current = Some((heading.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    finish(current, &document, &mut entries);
    entries
}

/// The embedded entries of one FAQ directory.
#[derive(Debug, Default)]
pub struct KnowledgeBase {
    entries: Vec<FaqEntry>,
    embeddings: Vec<Vec<f32>>,
}

impl KnowledgeBase {
    /// Reads every `*.md` file of `dir` (sorted by name) and embeds its entries. Two entries
    /// with the same id are refused.
    pub async fn load(dir: &Path, encoder: &SentenceEncoder) -> Result<Self> {
        let io = |source| AssistantError::Io { path: dir.to_path_buf(), source };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
            .collect();
        files.sort();
        let mut entries = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| AssistantError::Io { path: path.clone(), source })?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            entries.extend(parse_faq(&name, &text));
        }
        let mut ids = std::collections::BTreeSet::new();
        if let Some(dup) = entries.iter().find(|e| !ids.insert(e.id.as_str())) {
            return Err(AssistantError::Config(format!(
                "FAQ {}: two entries are {} (headings must differ within a file)",
                dir.display(),
                dup.id
            )));
        }
        let texts: Vec<String> = entries.iter().map(FaqEntry::embedding_text).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let embeddings = encode_all(encoder, &refs, 32).await?;
        Ok(Self { entries, embeddings })
    }

    pub fn entries(&self) -> &[FaqEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry most similar to `query` (a unit-length embedding) and its cosine similarity,
    /// if it reaches `min_score`.
    pub fn best(&self, query: &[f32], min_score: f32) -> Option<(&FaqEntry, f32)> {
        self.entries
            .iter()
            .zip(&self.embeddings)
            .map(|(e, v)| (e, dot(query, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|(_, s)| *s >= min_score)
    }
}

/// The dot product (the cosine similarity of unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sections_become_entries_cited_by_file_and_heading() {
        let md = "# Shipping\nIntro that is not an entry.\n\n## How long does delivery take?\nTwo to three days.\n\n### Express\nNext day.\n## Empty\n\n## Where do you ship?\nEU only.\n";
        let entries = parse_faq("shipping.md", md);
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["shipping.md#how-long-does-delivery-take", "shipping.md#where-do-you-ship"]);
        assert_eq!(entries[0].document, "Shipping");
        assert_eq!(entries[0].body, "Two to three days.\n\n### Express\nNext day.");
        assert_eq!(slug("Returns & refunds: 30 days!"), "returns-refunds-30-days");
    }

    #[test]
    fn snippets_are_cut_at_words() {
        assert_eq!(excerpt("short  text\nhere", 50), "short text here");
        assert_eq!(excerpt("one two three four", 10), "one two…");
    }
}
