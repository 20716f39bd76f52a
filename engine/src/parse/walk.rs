//! The one walker over the mappings of a pipeline file.
//!
//! Every mapping (the top level, a step, its `build` and `cache` entries, a
//! service, `on:` and its filters, `when:`, `preview:`, and the mappings of
//! names: `steps`, `services`, `env`) goes through [`walk`], so a value that
//! is not a mapping, a key that is not a plain word and a misspelt key are
//! reported in the same words, at the same place, with the same kind of hint,
//! wherever they are. Sections only say what their keys mean.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::value::{data, kind_of, scalar_text};
use crate::suggest::closest;

/// The keys a mapping takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keys {
    /// These words only, like a step's `image` and `commands`: any other is
    /// reported, with the closest one as a hint.
    Known(&'static [&'static str]),
    /// Names the user chooses: steps, services, variables. Any plain word
    /// is one; the section checks that it is a usable name.
    Names,
}

/// A mapping of the pipeline file, as diagnostics name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section<'s> {
    name: &'s str,
    keys: Keys,
    noun: &'static str,
    subject: Option<&'s str>,
    example: Option<&'s str>,
    may_be_empty: bool,
}

impl<'s> Section<'s> {
    /// `name` ends "unknown key `x` in ..." and starts "... must be a
    /// mapping": "step `build`", "`when`", "the pipeline".
    pub(super) fn new(name: &'s str, keys: Keys) -> Self {
        Section {
            name,
            keys,
            noun: "key",
            subject: None,
            example: None,
            may_be_empty: false,
        }
    }

    /// What its keys are called, when they are not just keys: `on:` takes
    /// events, and says "unknown event" in both its list and mapping forms.
    pub(super) fn noun(self, noun: &'static str) -> Self {
        Section { noun, ..self }
    }

    /// Names the section in "... must be a mapping" where `name` reads
    /// wrong there: "a pipeline must be a mapping" but "in the pipeline".
    pub(super) fn subject(self, subject: &'s str) -> Self {
        Section {
            subject: Some(subject),
            ..self
        }
    }

    /// The hint when the value is not a mapping, showing one.
    pub(super) fn example(self, example: &'s str) -> Self {
        Section {
            example: Some(example),
            ..self
        }
    }

    /// An empty value (`env:` with nothing after it) is an empty mapping.
    pub(super) fn may_be_empty(self) -> Self {
        Section {
            may_be_empty: true,
            ..self
        }
    }
}

/// One `key: value` of a mapping whose key the section takes.
#[derive(Debug)]
pub(super) struct Field<'a, 'i> {
    pub(super) key: String,
    pub(super) key_node: &'a MarkedYaml<'i>,
    pub(super) value: &'a MarkedYaml<'i>,
}

/// The usable entries of a mapping, in file order.
#[derive(Debug, Default)]
pub(super) struct Fields<'a, 'i> {
    known: Vec<Field<'a, 'i>>,
    unknown: Vec<String>,
    empty: bool,
}

impl<'a, 'i> Fields<'a, 'i> {
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Field<'a, 'i>> {
        self.known.iter()
    }

    pub(super) fn get(&self, key: &str) -> Option<&Field<'a, 'i>> {
        self.known.iter().find(|f| f.key == key)
    }

    /// Whether `key` is written, whatever its value: "has both `build` and
    /// `image`" holds even when the image is unusable.
    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys the section does not take (already reported), for hints
    /// that look at the whole mapping.
    pub(super) fn unknown(&self) -> &[String] {
        &self.unknown
    }

    /// No entries at all, not even unusable ones.
    pub(super) fn is_empty(&self) -> bool {
        self.empty
    }
}

impl<'f, 'a, 'i> IntoIterator for &'f Fields<'a, 'i> {
    type Item = &'f Field<'a, 'i>;
    type IntoIter = std::slice::Iter<'f, Field<'a, 'i>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Walks `node`, which should be the mapping `section`: reports it if it is
/// not one, reports each key that is not a plain word and each key the
/// section does not take, and returns the rest. `None` when `node` is not a
/// mapping (already reported). With [`Keys::Known`], every returned key is
/// one of them.
pub(super) fn walk<'a, 'i>(
    cx: &mut Cx,
    node: &'a MarkedYaml<'i>,
    section: &Section,
) -> Option<Fields<'a, 'i>> {
    let map = match data(node) {
        YamlData::Mapping(map) => map,
        YamlData::Value(Scalar::Null) if section.may_be_empty => {
            return Some(Fields {
                empty: true,
                ..Fields::default()
            });
        }
        _ => {
            cx.error(
                node,
                format!(
                    "{} must be a mapping, found {}",
                    section.subject.unwrap_or(section.name),
                    kind_of(node)
                ),
                section.example.map(String::from),
            );
            return None;
        }
    };
    let mut fields = Fields {
        empty: map.is_empty(),
        ..Fields::default()
    };
    for (k, v) in map.iter() {
        let Some(key) = scalar_text(k) else {
            cx.error(k, "keys must be plain words", None);
            continue;
        };
        match section.keys {
            Keys::Known(known) if !known.contains(&key.as_str()) => {
                report_unknown(cx, k, &key, section);
                fields.unknown.push(key);
            }
            _ => fields.known.push(Field {
                key,
                key_node: k,
                value: v,
            }),
        }
    }
    Some(fields)
}

/// Reports `word` at `at`: not one of the keys `section` takes. The closest
/// key is the hint, or the whole list when none is close. Public to the
/// parser for `on: [pushh]`, whose list entries are the mapping's keys.
pub(super) fn report_unknown(cx: &mut Cx, at: &MarkedYaml, word: &str, section: &Section) {
    let allowed: &[&str] = match section.keys {
        Keys::Known(known) => known,
        Keys::Names => &[],
    };
    let noun = section.noun;
    let hint = match closest(word, allowed.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("allowed {noun}s: {}", allowed.join(", ")),
    };
    cx.error(
        at,
        format!("unknown {noun} `{word}` in {}", section.name),
        Some(hint),
    );
}

#[cfg(test)]
mod tests {
    use super::super::errors;

    /// `line:col` of the first `word` in `src`, as diagnostics print it.
    fn at(src: &str, word: &str) -> String {
        src.lines()
            .enumerate()
            .find_map(|(i, l)| l.find(word).map(|c| format!("{}:{}", i + 1, c + 1)))
            .unwrap_or_else(|| panic!("no `{word}` in {src}"))
    }

    const STEPS: &str = "steps: {a: {image: x, commands: [true]}}";

    /// In each section, a key it does not take and none is close to
    /// (`zzzz`) and a key that is not a word (`[zz]`): the same two
    /// messages, at the keys, the first listing the keys it takes.
    #[test]
    fn every_section_reports_unknown_and_unusable_keys_the_same_way() {
        let bad = "zzzz: 1, [zz]: 1";
        let mut wrong = Vec::new();
        for (unknown, src) in [
            (
                "unknown key `zzzz` in the pipeline",
                format!("{{{bad}, {STEPS}}}"),
            ),
            (
                "unknown key `zzzz` in step `a`",
                format!("steps: {{a: {{image: x, commands: [true], {bad}}}}}"),
            ),
            (
                "unknown key `zzzz` in `build` of step `a`",
                format!("steps: {{a: {{build: {{tags: [t], {bad}}}}}}}"),
            ),
            (
                "unknown key `zzzz` in a `cache` entry",
                format!(
                    "steps: {{a: {{image: x, commands: [true], cache: [{{key: k, paths: [p], {bad}}}]}}}}"
                ),
            ),
            (
                "unknown key `zzzz` in `when`",
                format!("steps: {{a: {{image: x, commands: [true], when: {{{bad}}}}}}}"),
            ),
            (
                "unknown key `zzzz` in service `db`",
                format!("services: {{db: {{image: x, {bad}}}}}\n{STEPS}"),
            ),
            (
                "unknown event `zzzz` in `on`",
                format!("on: {{push: {{}}, {bad}}}\n{STEPS}"),
            ),
            (
                "unknown key `zzzz` in `on.push`",
                format!("on: {{push: {{{bad}}}}}\n{STEPS}"),
            ),
            (
                "unknown key `zzzz` in `on.pull_request`",
                format!("on: {{pull_request: {{{bad}}}}}\n{STEPS}"),
            ),
            (
                "unknown key `zzzz` in `preview`",
                format!(
                    "preview: {{image: b, port: 80, {bad}}}\nsteps: {{b: {{build: {{tags: [t], push: true}}}}}}"
                ),
            ),
        ] {
            let errs = errors(&src);
            let unknown = format!(
                "p.yml:{}: error: {unknown}\n  hint: allowed ",
                at(&src, "zzzz")
            );
            let unusable = format!(
                "p.yml:{}: error: keys must be plain words",
                at(&src, "[zz]")
            );
            if !(errs.len() == 2
                && errs.iter().any(|e| e.starts_with(&unknown))
                && errs.contains(&unusable))
            {
                wrong.push(format!(
                    "{src}\n  wanted `{unknown}..` and `{unusable}`, got {errs:#?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Steps, services and variables are named by their keys: a key that
    /// is not a word is reported in the same words as in any other mapping.
    #[test]
    fn mappings_of_names_report_unusable_keys_the_same_way() {
        let mut wrong = Vec::new();
        for src in [
            "steps: {[zz]: 1, a: {image: x, commands: [true]}}".to_string(),
            format!("services: {{[zz]: 1}}\n{STEPS}"),
            format!("env: {{[zz]: 1}}\n{STEPS}"),
            "steps: {a: {image: x, commands: [true], env: {[zz]: 1}}}".to_string(),
            "steps: {a: {build: {tags: [t], args: {[zz]: 1}}}}".to_string(),
            "preview: {image: b, port: 80, env: {[zz]: 1}}\nsteps: {b: {build: {tags: [t], push: true}}}"
                .to_string(),
        ] {
            let unusable = format!(
                "p.yml:{}: error: keys must be plain words",
                at(&src, "[zz]")
            );
            let errs = errors(&src);
            if errs != [unusable.clone()] {
                wrong.push(format!("{src}\n  wanted `{unusable}`, got {errs:#?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
