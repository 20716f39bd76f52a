//! The dependency graph of a pipeline's steps, and how to draw it.

use std::collections::VecDeque;
use std::fmt::Write as _;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::model::Pipeline;

/// Why a plan could not be made. Validation reports these with positions;
/// this is the guard for pipelines built in code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("step `{step}` needs unknown step `{need}`")]
    UnknownNeed { step: String, need: String },
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Steps as indices with their edges both ways, in file order, so the
/// scheduler never hashes a name on its hot path.
#[derive(Debug, Clone)]
pub struct Plan {
    names: Vec<String>,
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    /// Longest chain of `needs` above each step: 0 for steps that start at once.
    levels: Vec<usize>,
    title: String,
}

/// Edges from each step to the steps it needs, by index.
fn graph<'a>(
    names: &[&'a str],
    needs: impl Fn(usize) -> &'a [String],
) -> Result<DiGraph<usize, ()>, PlanError> {
    let index: std::collections::HashMap<&str, usize> =
        names.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut g = DiGraph::with_capacity(names.len(), names.len());
    for i in 0..names.len() {
        g.add_node(i);
    }
    for (i, name) in names.iter().enumerate() {
        for need in needs(i) {
            let Some(&j) = index.get(need.as_str()) else {
                return Err(PlanError::UnknownNeed {
                    step: name.to_string(),
                    need: need.clone(),
                });
            };
            g.update_edge(NodeIndex::new(i), NodeIndex::new(j), ());
        }
    }
    Ok(g)
}

/// Every dependency cycle of a pipeline, each as step names in `needs`
/// order (`[a, b]` means a needs b and b needs a).
pub fn find_cycles(pipeline: &Pipeline) -> Vec<Vec<String>> {
    let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
    find_cycles_in(&names, |i| &pipeline.steps[i].needs)
}

/// [`find_cycles`] over bare names and needs, for validation of files whose
/// steps are not all valid yet. Needs of unknown steps are ignored.
pub fn find_cycles_in<'a>(
    names: &[&'a str],
    needs: impl Fn(usize) -> &'a [String],
) -> Vec<Vec<String>> {
    let known: std::collections::HashSet<&str> = names.iter().copied().collect();
    let filtered: Vec<Vec<String>> = (0..names.len())
        .map(|i| {
            needs(i)
                .iter()
                .filter(|n| known.contains(n.as_str()))
                .cloned()
                .collect()
        })
        .collect();
    let Ok(g) = graph(names, |i| &filtered[i]) else {
        return Vec::new();
    };
    let mut cycles = Vec::new();
    for scc in tarjan_scc(&g) {
        let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let start = *scc
            .iter()
            .min_by_key(|n| n.index())
            .expect("scc is not empty");
        // Shortest way round from `start` back to itself inside the SCC,
        // preferring steps declared earlier so the message is stable.
        let mut prev = vec![None; g.node_count()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'bfs: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = g.neighbors(n).collect();
            next.sort_unstable();
            for m in next {
                if m == start {
                    closing = Some(n);
                    break 'bfs;
                }
                if scc.contains(&m) && prev[m.index()].is_none() {
                    prev[m.index()] = Some(n);
                    queue.push_back(m);
                }
            }
        }
        let mut path = Vec::new();
        let mut cur = closing;
        while let Some(n) = cur {
            path.push(names[g[n]].to_string());
            cur = if n == start { None } else { prev[n.index()] };
        }
        path.reverse();
        cycles.push(path);
    }
    cycles.sort();
    cycles
}

impl Plan {
    pub fn new(pipeline: &Pipeline) -> Result<Plan, PlanError> {
        let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        let g = graph(&names, |i| &pipeline.steps[i].needs)?;
        // toposort finds whether there is a cycle; only then is it worth naming.
        let Ok(order) = petgraph::algo::toposort(&g, None) else {
            let cycle = find_cycles(pipeline).into_iter().next().unwrap_or_default();
            let mut names = cycle.clone();
            names.extend(cycle.first().cloned());
            return Err(PlanError::Cycle(names));
        };
        let n = pipeline.steps.len();
        let mut needs = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for e in g.raw_edges() {
            let (step, need) = (e.source().index(), e.target().index());
            needs[step].push(need);
            dependents[need].push(step);
        }
        for v in needs.iter_mut().chain(dependents.iter_mut()) {
            v.sort_unstable();
        }
        // toposort follows needs-edges, so what a step needs comes after it.
        let mut levels = vec![0; n];
        for node in order.into_iter().rev() {
            let i = node.index();
            levels[i] = needs[i].iter().map(|&j| levels[j] + 1).max().unwrap_or(0);
        }
        Ok(Plan {
            names: pipeline.steps.iter().map(|s| s.name.clone()).collect(),
            needs,
            dependents,
            levels,
            title: pipeline.name.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, step: usize) -> &str {
        &self.names[step]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn needs(&self, step: usize) -> &[usize] {
        &self.needs[step]
    }

    pub fn dependents(&self, step: usize) -> &[usize] {
        &self.dependents[step]
    }

    pub fn level(&self, step: usize) -> usize {
        self.levels[step]
    }

    /// Edges as `(step, needed step)` pairs, by name.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.needs.iter().enumerate().flat_map(move |(i, ns)| {
            ns.iter()
                .map(move |&j| (self.names[i].as_str(), self.names[j].as_str()))
        })
    }

    pub fn render(&self, format: GraphFormat) -> String {
        let mut out = String::new();
        match format {
            GraphFormat::Text => {
                let depth = self.levels.iter().copied().max().map_or(0, |m| m + 1);
                let width = self.names.iter().map(String::len).max().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{} ({} steps, {} stages)",
                    self.title,
                    self.len(),
                    depth
                );
                for level in 0..depth {
                    let mut first = true;
                    for i in (0..self.len()).filter(|&i| self.levels[i] == level) {
                        let stage = if first {
                            format!("stage {}", level + 1)
                        } else {
                            String::new()
                        };
                        first = false;
                        let needs: Vec<&str> = self.needs[i]
                            .iter()
                            .map(|&j| self.names[j].as_str())
                            .collect();
                        let arrow = if needs.is_empty() {
                            String::new()
                        } else {
                            format!("  <- {}", needs.join(", "))
                        };
                        let _ = writeln!(out, "  {stage:<9} {:<width$}{arrow}", self.names[i]);
                    }
                }
            }
            GraphFormat::Dot => {
                let _ = writeln!(out, "digraph {} {{", quote(&self.title));
                let _ = writeln!(out, "  rankdir=LR;");
                for name in &self.names {
                    let _ = writeln!(out, "  {};", quote(name));
                }
                for (step, need) in self.edges() {
                    let _ = writeln!(out, "  {} -> {};", quote(need), quote(step));
                }
                out.push_str("}\n");
            }
            GraphFormat::Mermaid => {
                // Mermaid ids are restrictive; names go in labels.
                out.push_str("graph LR\n");
                for (i, name) in self.names.iter().enumerate() {
                    let _ = writeln!(out, "  s{i}[\"{}\"]", name.replace('"', "#quot;"));
                }
                for (i, ns) in self.needs.iter().enumerate() {
                    for j in ns {
                        let _ = writeln!(out, "  s{j} --> s{i}");
                    }
                }
            }
        }
        out
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

impl std::str::FromStr for GraphFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(GraphFormat::Text),
            "dot" => Ok(GraphFormat::Dot),
            "mermaid" => Ok(GraphFormat::Mermaid),
            _ => Err(format!("unknown graph format `{s}` (text, dot or mermaid)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn plan(src: &str) -> Plan {
        Plan::new(&parse("p.yml", src).pipeline.expect("valid")).expect("plan")
    }

    const DIAMOND: &str = "\
name: d
steps:
  build: {image: x, commands: [true]}
  test: {image: x, commands: [true], needs: [build]}
  scan: {image: x, commands: [true], needs: [build]}
  ship: {image: x, commands: [true], needs: [test, scan]}
";

    #[test]
    fn levels_and_edges() {
        let p = plan(DIAMOND);
        assert_eq!((0..4).map(|i| p.level(i)).collect::<Vec<_>>(), [0, 1, 1, 2]);
        assert_eq!(p.needs(3), [1, 2]);
        assert_eq!(p.dependents(0), [1, 2]);
        let edges: Vec<_> = p.edges().collect();
        assert_eq!(
            edges,
            [
                ("test", "build"),
                ("scan", "build"),
                ("ship", "test"),
                ("ship", "scan")
            ]
        );
    }

    #[test]
    fn renders_three_formats() {
        let p = plan(DIAMOND);
        let text = p.render(GraphFormat::Text);
        assert!(text.starts_with("d (4 steps, 3 stages)\n"), "{text}");
        assert!(text.contains("stage 3   ship   <- test, scan"), "{text}");
        let dot = p.render(GraphFormat::Dot);
        assert!(dot.contains("\"build\" -> \"test\";"), "{dot}");
        let mermaid = p.render(GraphFormat::Mermaid);
        assert!(
            mermaid.contains("  s0 --> s1\n") && mermaid.contains("s3[\"ship\"]"),
            "{mermaid}"
        );
    }

    #[test]
    fn plans_built_in_code_are_checked_too() {
        let mut pipeline = parse("p.yml", DIAMOND).pipeline.unwrap();
        pipeline.steps[0].needs = vec!["ship".into()];
        assert_eq!(
            Plan::new(&pipeline).unwrap_err().to_string(),
            "dependency cycle: build -> ship -> test -> build"
        );
        pipeline.steps[0].needs = vec!["nope".into()];
        assert!(matches!(
            Plan::new(&pipeline),
            Err(PlanError::UnknownNeed { .. })
        ));
    }
}
