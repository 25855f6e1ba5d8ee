//! Where each key of a YAML document is: `folders[0].width` → line 4, column 5.
//! serde gives the position of the first error only; this map lets validation
//! report every error with its own line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Default, Debug)]
pub struct Positions {
    map: HashMap<String, Position>,
}

impl Positions {
    /// Positions of every key and sequence item; empty if the text is not YAML
    /// (serde reports that error itself).
    pub fn of(text: &str) -> Positions {
        let mut recorder = Recorder::default();
        let _ = Parser::new_from_str(text).load(&mut recorder, false);
        Positions { map: recorder.map }
    }

    /// The position of `path`, or of its nearest recorded ancestor.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
}

impl Recorder {
    /// Path of the value about to start at the top of the stack.
    fn value_path(&self) -> String {
        match self.stack.last() {
            Some(Frame::Map { path, key: Some(k) }) => join(path, k),
            Some(Frame::Seq { path, index }) => format!("{path}[{index}]"),
            _ => String::new(),
        }
    }

    /// A value finished: advance the parent.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn note_item(&mut self, mark: Marker) {
        if let Some(Frame::Seq { .. }) = self.stack.last() {
            let path = self.value_path();
            self.map.insert(path, to_position(mark));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn to_position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut()
                    && key.is_none()
                {
                    let full = join(path, &text);
                    self.map.insert(full, to_position(mark));
                    *key = Some(text);
                    return;
                }
                self.note_item(mark);
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.note_item(mark);
                let path = self.value_path();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                self.note_item(mark);
                let path = self.value_path();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => {
                self.note_item(mark);
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "threads: 2\nfolders:\n  - path: /a\n    width: 10\n  - path: /b\n    formats: [webp, png]\n";
        let p = Positions::of(text);
        assert_eq!(p.find("threads").unwrap().line, 1);
        assert_eq!(
            p.find("folders[0].width").unwrap(),
            Position { line: 4, column: 5 }
        );
        assert_eq!(p.find("folders[1].path").unwrap().line, 5);
        assert_eq!(p.find("folders[1].formats[1]").unwrap().line, 6);
        // Unknown deeper path falls back to its ancestor.
        assert_eq!(p.find("folders[1].path.nope").unwrap().line, 5);
    }
}
