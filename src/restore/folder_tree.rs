//! The folder paths a restore plan writes to, as a tree of (parent, name)
//! nodes: planned by `engine`, named on the target by `runner`.

use std::collections::HashMap;

/// The folder paths of a group as a tree of (parent, name) nodes, each
/// folder once: memory grows with the number of folders, not with their
/// number times their depth. Node 0 is the root (the empty path).
#[derive(Clone, Debug)]
pub struct FolderTree {
    nodes: Vec<(usize, String)>,
    index: HashMap<(usize, String), usize>,
}

impl Default for FolderTree {
    fn default() -> FolderTree {
        FolderTree {
            nodes: vec![(0, String::new())],
            index: HashMap::new(),
        }
    }
}

impl FolderTree {
    pub const ROOT: usize = 0;

    /// The node of `name` below `parent`, made if new.
    pub fn child(&mut self, parent: usize, name: &str) -> usize {
        if let Some(&n) = self.index.get(&(parent, name.to_string())) {
            return n;
        }
        self.nodes.push((parent, name.to_string()));
        let n = self.nodes.len() - 1;
        self.index.insert((parent, name.to_string()), n);
        n
    }

    /// The node of a path, made if new.
    pub fn intern(&mut self, path: &[String]) -> usize {
        path.iter().fold(Self::ROOT, |n, c| self.child(n, c))
    }

    /// The parent and name of a node (`None` for the root).
    pub fn parent(&self, node: usize) -> Option<(usize, &str)> {
        (node != Self::ROOT).then(|| (self.nodes[node].0, self.nodes[node].1.as_str()))
    }

    /// The path of a node, root side first.
    pub fn path(&self, mut node: usize) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((parent, name)) = self.parent(node) {
            out.push(name.to_string());
            node = parent;
        }
        out.reverse();
        out
    }

    /// The path for messages: `a/b/c`, its middle left out past 300 bytes.
    pub fn display(&self, node: usize) -> String {
        let full = self.path(node).join("/");
        if full.len() <= 300 {
            return full;
        }
        let mut head = 140;
        while !full.is_char_boundary(head) {
            head -= 1;
        }
        let mut tail = full.len() - 140;
        while !full.is_char_boundary(tail) {
            tail += 1;
        }
        format!("{}/.../{}", &full[..head], &full[tail..])
    }
}
