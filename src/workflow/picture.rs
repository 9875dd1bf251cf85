//! The workflow as a read-only picture in the page itself (progressive load, docs/workflow-format.md):
//! boxes and edges laid out as the canvas' far view lays them out (static/src/view.js), drawn
//! at once while the live document loads; the canvas replaces it when it has synced.

use serde_json::Value;

/// As static/src/view.js.
const BOX_W: f64 = 220.0;
const HEADER_H: f64 = 30.0;
const ROW_H: f64 = 18.0;
const MAX_ROWS: usize = 12;
const MAX_DEPTH: usize = 24;
/// Names are written into the picture only while there are few enough to read.
const MAX_NAMED: usize = 80;

pub struct Picture {
    pub view_box: String,
    pub boxes: String,
    pub edges: String,
    pub screens: usize,
    pub edge_count: usize,
    /// `(x, y, name)` when there are at most [`MAX_NAMED`] screens.
    pub names: Vec<(i64, i64, String)>,
}

struct Placed {
    x: f64,
    y: f64,
    h: f64,
}

/// Instances of a screen, as the canvas counts them (depth first, at most [`MAX_DEPTH`] deep).
fn instances(screen: &Value) -> usize {
    let mut count = 0;
    let mut stack: Vec<(&Value, usize)> = screen.get("root").map(|r| (r, 0)).into_iter().collect();
    while let Some((inst, depth)) = stack.pop() {
        if !inst.is_object() || depth > MAX_DEPTH {
            continue;
        }
        count += 1;
        if let Some(children) = inst.get("children").and_then(Value::as_array) {
            stack.extend(children.iter().map(|c| (c, depth + 1)));
        }
    }
    count
}

fn height(instances: usize) -> f64 {
    let rows = instances.min(MAX_ROWS);
    let more = usize::from(instances > rows);
    HEADER_H + (rows + more).max(1) as f64 * ROW_H + 8.0
}

/// Where the segment from the centre of `a` towards the centre of `b` leaves `a`.
fn border(a: &Placed, b: &Placed) -> (f64, f64) {
    let (cx, cy) = (a.x + BOX_W / 2.0, a.y + a.h / 2.0);
    let (dx, dy) = (b.x + BOX_W / 2.0 - cx, b.y + b.h / 2.0 - cy);
    if dx == 0.0 && dy == 0.0 {
        return (cx, cy);
    }
    let tx = if dx != 0.0 { BOX_W / 2.0 / dx.abs() } else { f64::INFINITY };
    let ty = if dy != 0.0 { a.h / 2.0 / dy.abs() } else { f64::INFINITY };
    let t = tx.min(ty);
    (cx + dx * t, cy + dy * t)
}

fn coordinate(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).filter(|f| f.is_finite()).unwrap_or(0.0).clamp(-1e7, 1e7)
}

/// The picture of a workflow document's content (`None` when it has no screens).
pub fn picture(content: &Value) -> Option<Picture> {
    use std::fmt::Write;
    let screens = content.get("screens").and_then(Value::as_object)?;
    let mut placed = std::collections::HashMap::with_capacity(screens.len());
    let mut boxes = String::with_capacity(screens.len() * 32);
    let mut names = vec![];
    let (mut x0, mut y0, mut x1, mut y1) = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (id, s) in screens {
        if !s.is_object() {
            continue;
        }
        let p = Placed { x: coordinate(s.get("x")), y: coordinate(s.get("y")), h: height(instances(s)) };
        let _ = write!(boxes, "M{} {}h{BOX_W}v{}h-{BOX_W}z", p.x.round(), p.y.round(), p.h);
        (x0, y0, x1, y1) = (x0.min(p.x), y0.min(p.y), x1.max(p.x + BOX_W), y1.max(p.y + p.h));
        if screens.len() <= MAX_NAMED {
            let name = s.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or("Untitled");
            names.push((p.x as i64 + 8, p.y as i64 + 20, name.chars().take(26).collect()));
        }
        placed.insert(id.as_str(), p);
    }
    if placed.is_empty() {
        return None;
    }
    let mut edges = String::new();
    let mut edge_count = 0;
    for e in content.get("edges").and_then(Value::as_array).into_iter().flatten() {
        let end =
            |side: &str| e.pointer(&format!("/{side}/screen_id")).and_then(Value::as_str).and_then(|id| placed.get(id));
        let (Some(a), Some(b)) = (end("from"), end("to")) else { continue };
        if std::ptr::eq(a, b) {
            continue;
        }
        let ((ax, ay), (bx, by)) = (border(a, b), border(b, a));
        let _ = write!(edges, "M{} {}L{} {}", ax.round(), ay.round(), bx.round(), by.round());
        edge_count += 1;
    }
    let pad = 40.0;
    Some(Picture {
        view_box: format!("{} {} {} {}", x0 - pad, y0 - pad, x1 - x0 + 2.0 * pad, y1 - y0 + 2.0 * pad),
        boxes,
        edges,
        screens: placed.len(),
        edge_count,
        names,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn boxes_edges_and_the_frame_follow_the_canvas_layout() {
        let leaf = json!({"id": "i", "component_id": "c", "props": {}, "children": []});
        let doc = json!({
            "screens": {
                "a": {"name": "Home", "x": 0, "y": 0, "root": {"id": "r", "children": [leaf.clone(), leaf]}},
                "b": {"name": "Cart", "x": 400, "y": 0, "root": {"id": "r2", "children": []}},
                "bad": 5,
            },
            "edges": [
                {"from": {"screen_id": "a"}, "to": {"screen_id": "b"}},
                {"from": {"screen_id": "a"}, "to": {"screen_id": "gone"}},
                {"from": {"screen_id": "a"}, "to": {"screen_id": "a"}},
            ],
        });
        let p = picture(&doc).unwrap();
        assert_eq!((p.screens, p.edge_count), (2, 1));
        // Home: 3 instances → 30 + 3 × 18 + 8 = 92 high; Cart: 1 → 56.
        assert!(p.boxes.contains("M0 0h220v92h-220z") && p.boxes.contains("M400 0h220v56h-220z"), "{}", p.boxes);
        // From Home's right side (its middle, y 46) to Cart's left side.
        assert!(p.edges.starts_with("M220 "), "{}", p.edges);
        assert_eq!(p.view_box, "-40 -40 700 172");
        assert_eq!(p.names.len(), 2);
        assert!(picture(&json!({"screens": {}})).is_none());
        assert!(picture(&json!(null)).is_none());
    }

    #[test]
    fn hostile_coordinates_and_depth_do_not_break_it() {
        let mut deep = json!({"id": "leaf"});
        for _ in 0..100 {
            deep = json!({"id": "n", "children": [deep]});
        }
        let doc = json!({"screens": {"a": {"x": "NaN", "y": 1e300, "root": deep}}});
        let p = picture(&doc).unwrap();
        assert!(p.boxes.starts_with("M0 10000000h220v"), "{}", p.boxes);
        assert!(p.boxes.contains(&format!("v{}", height(25))), "25 levels counted: {}", p.boxes);
    }
}
