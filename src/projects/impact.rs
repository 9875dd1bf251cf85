//! Pre-edit impact analysis: what a proposed text of a component spec would break on the
//! project's screens — instances that set a prop that goes away, stored values that no longer fit
//! a prop's new type, edges that start from an event that goes away — and how much each prop and
//! event is used. Pure: the caller brings both specs and the workflow document's content.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::specs::Component;
use crate::specs::types::{self, Fit};

/// One screen, instance or edge a change reaches.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Affected {
    pub screen_id: String,
    pub screen_name: String,
    pub instance_id: String,
    /// The value the instance stores for the prop (removed or retyped props).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The edge that starts from the event (removed events), and where it leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_screen_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_screen_name: Option<String>,
}

/// One change of the spec that reaches the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// `prop_removed`, `prop_retyped` or `event_removed`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_type: Option<String>,
    /// For a retyped prop, only the values that no longer fit.
    pub affected: Vec<Affected>,
}

/// How much a prop or event of the current spec is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// `prop` or `event`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    /// Instances that set the prop / have an edge from the event.
    pub instances: usize,
    pub screens: usize,
    /// Edges that start from the event.
    pub edges: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    pub screens: usize,
    pub instances: usize,
    pub values: usize,
    pub edges: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Impact {
    pub component_id: Option<String>,
    /// Instances of the component on the project's screens.
    pub instances: usize,
    pub changes: Vec<Change>,
    /// Distinct screens and instances the changes reach, values that no longer fit, edges.
    pub counts: Counts,
    /// True when something is affected: the editor asks before saving.
    pub needs_confirmation: bool,
    pub usage: Vec<Usage>,
}

/// One instance of the component: where it is and the values it stores.
struct Placed<'a> {
    screen_id: &'a str,
    screen_name: &'a str,
    instance_id: &'a str,
    props: Option<&'a serde_json::Map<String, Value>>,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every instance of `component_id` on the document's screens, in screen order (by name, then id).
fn instances_of<'a>(workflow: &'a Value, component_id: &str) -> Vec<Placed<'a>> {
    let mut screens: Vec<(&String, &Value)> =
        workflow.get("screens").and_then(Value::as_object).map(|m| m.iter().collect()).unwrap_or_default();
    let name = |s: &'a Value| s.get("name").and_then(Value::as_str).unwrap_or("");
    screens.sort_by(|a, b| (name(a.1), a.0).cmp(&(name(b.1), b.0)));
    let mut out = vec![];
    for (screen_id, screen) in screens {
        // Depth-first, with an explicit stack: a document may nest deeply.
        let mut stack: Vec<&Value> = screen.get("root").into_iter().collect();
        while let Some(inst) = stack.pop() {
            if inst.get("component_id").and_then(Value::as_str) == Some(component_id) {
                out.push(Placed {
                    screen_id,
                    screen_name: name(screen),
                    instance_id: inst.get("id").and_then(Value::as_str).unwrap_or(""),
                    props: inst.get("props").and_then(Value::as_object),
                });
            }
            if let Some(children) = inst.get("children").and_then(Value::as_array) {
                stack.extend(children.iter().rev());
            }
        }
    }
    out
}

/// Two type texts mean the same type (`'a' | 'b'` and `"a" | "b"`).
fn same_type(a: &str, b: &str) -> bool {
    match (types::parse(a), types::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.split_whitespace().eq(b.split_whitespace()),
    }
}

/// What replacing `current` by `proposed` does to the workflow.
pub fn analyze(current: &Component, proposed: &Component, workflow: &Value) -> Impact {
    let Some(component_id) = current.id.clone() else {
        return Impact {
            component_id: None,
            instances: 0,
            changes: vec![],
            counts: Counts::default(),
            needs_confirmation: false,
            usage: vec![],
        };
    };
    let placed = instances_of(workflow, &component_id);
    let edges: Vec<&Value> =
        workflow.get("edges").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let screen_name = |id: &str| {
        workflow
            .pointer(&format!("/screens/{}/name", id.replace('~', "~0").replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let from = |e: &Value, key: &str| e.pointer(&format!("/from/{key}")).and_then(Value::as_str).map(str::to_owned);
    let edges_from = |event_id: &str| -> Vec<(Affected, String)> {
        edges
            .iter()
            .filter(|e| from(e, "event_id").as_deref() == Some(event_id))
            .filter_map(|e| {
                let instance_id = from(e, "instance_id")?;
                let at = placed.iter().find(|p| p.instance_id == instance_id)?;
                let to = e.pointer("/to/screen_id").and_then(Value::as_str).map(str::to_owned);
                Some((
                    Affected {
                        screen_id: at.screen_id.into(),
                        screen_name: at.screen_name.into(),
                        instance_id,
                        value: None,
                        edge_id: e.get("id").and_then(Value::as_str).map(str::to_owned),
                        to_screen_name: to.as_deref().and_then(screen_name),
                        to_screen_id: to,
                    },
                    at.screen_id.to_owned(),
                ))
            })
            .collect()
    };
    let setting = |prop_id: &str| -> Vec<(&Placed<'_>, String)> {
        placed
            .iter()
            .filter_map(|p| p.props.and_then(|m| m.get(prop_id)).filter(|v| !v.is_null()).map(|v| (p, text_of(v))))
            .collect()
    };
    let affected = |p: &Placed<'_>, value: String| Affected {
        screen_id: p.screen_id.into(),
        screen_name: p.screen_name.into(),
        instance_id: p.instance_id.into(),
        value: Some(value),
        edge_id: None,
        to_screen_id: None,
        to_screen_name: None,
    };

    let mut usage = vec![];
    for prop in &current.props {
        let set = setting(&prop.id);
        let mut screens: Vec<&str> = set.iter().map(|(p, _)| p.screen_id).collect();
        screens.sort_unstable();
        screens.dedup();
        usage.push(Usage {
            kind: "prop",
            id: prop.id.clone(),
            name: prop.name.clone(),
            instances: set.len(),
            screens: screens.len(),
            edges: 0,
        });
    }
    for event in &current.events {
        let found = edges_from(&event.id);
        let mut instances: Vec<&str> = found.iter().map(|(a, _)| a.instance_id.as_str()).collect();
        instances.sort_unstable();
        instances.dedup();
        let mut screens: Vec<&str> = found.iter().map(|(_, s)| s.as_str()).collect();
        screens.sort_unstable();
        screens.dedup();
        usage.push(Usage {
            kind: "event",
            id: event.id.clone(),
            name: event.name.clone(),
            instances: instances.len(),
            screens: screens.len(),
            edges: found.len(),
        });
    }

    let mut changes = vec![];
    for prop in current.props.iter().filter(|p| !p.id.is_empty()) {
        match proposed.props.iter().find(|n| n.id == prop.id) {
            None => changes.push(Change {
                kind: "prop_removed",
                id: prop.id.clone(),
                name: prop.name.clone(),
                from_type: Some(prop.type_.clone()),
                to_type: None,
                affected: setting(&prop.id).into_iter().map(|(p, v)| affected(p, v)).collect(),
            }),
            Some(next) if !same_type(&prop.type_, &next.type_) => {
                let fits = types::parse(&next.type_).ok();
                changes.push(Change {
                    kind: "prop_retyped",
                    id: prop.id.clone(),
                    name: next.name.clone(),
                    from_type: Some(prop.type_.clone()),
                    to_type: Some(next.type_.clone()),
                    affected: setting(&prop.id)
                        .into_iter()
                        .filter(|(_, v)| fits.as_ref().is_some_and(|t| t.fits(v) == Fit::No))
                        .map(|(p, v)| affected(p, v))
                        .collect(),
                });
            }
            Some(_) => {}
        }
    }
    for event in current.events.iter().filter(|e| !e.id.is_empty()) {
        if !proposed.events.iter().any(|n| n.id == event.id) {
            changes.push(Change {
                kind: "event_removed",
                id: event.id.clone(),
                name: event.name.clone(),
                from_type: None,
                to_type: None,
                affected: edges_from(&event.id).into_iter().map(|(a, _)| a).collect(),
            });
        }
    }

    let mut screens = vec![];
    let mut instances = vec![];
    let mut counts = Counts::default();
    for c in &changes {
        for a in &c.affected {
            screens.push(a.screen_id.as_str());
            instances.push(a.instance_id.as_str());
            if a.edge_id.is_some() {
                counts.edges += 1;
            } else {
                counts.values += 1;
            }
        }
    }
    screens.sort_unstable();
    screens.dedup();
    instances.sort_unstable();
    instances.dedup();
    counts.screens = screens.len();
    counts.instances = instances.len();
    Impact {
        component_id: Some(component_id),
        instances: placed.len(),
        needs_confirmation: counts.values + counts.edges > 0,
        changes,
        counts,
        usage,
    }
}

/// What deleting the component does: every instance of it is left without a component (one
/// `component_removed` change listing them, first), with the values they store and the edges from
/// its events. Anything placed needs a confirmation.
pub fn removal(current: &Component, workflow: &Value) -> Impact {
    let nothing = Component { props: vec![], events: vec![], ..current.clone() };
    let mut impact = analyze(current, &nothing, workflow);
    let Some(component_id) = impact.component_id.clone() else { return impact };
    let placed = instances_of(workflow, &component_id);
    if placed.is_empty() {
        return impact;
    }
    let affected: Vec<Affected> = placed
        .iter()
        .map(|p| Affected {
            screen_id: p.screen_id.into(),
            screen_name: p.screen_name.into(),
            instance_id: p.instance_id.into(),
            value: None,
            edge_id: None,
            to_screen_id: None,
            to_screen_name: None,
        })
        .collect();
    let mut screens: Vec<&str> = affected.iter().map(|a| a.screen_id.as_str()).collect();
    screens.sort_unstable();
    screens.dedup();
    impact.counts.screens = screens.len();
    impact.counts.instances = affected.len();
    impact.needs_confirmation = true;
    impact.changes.insert(
        0,
        Change {
            kind: "component_removed",
            id: component_id,
            name: current.name.clone(),
            from_type: None,
            to_type: None,
            affected,
        },
    );
    impact
}

/// Whether `proposed` removes or retypes anything of `current` (only then is the workflow read).
pub fn may_break(current: &Component, proposed: &Component) -> bool {
    current
        .props
        .iter()
        .any(|p| proposed.props.iter().find(|n| n.id == p.id).is_none_or(|n| !same_type(&p.type_, &n.type_)))
        || current.events.iter().any(|e| !proposed.events.iter().any(|n| n.id == e.id))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::specs::{Event, Prop};

    fn prop(id: &str, name: &str, ty: &str) -> Prop {
        Prop {
            id: id.into(),
            name: name.into(),
            type_: ty.into(),
            default: None,
            text_editable: false,
            description: None,
        }
    }

    fn button(props: Vec<Prop>, events: Vec<Event>) -> Component {
        Component { id: Some("c-button".into()), name: "Button".into(), status: None, props, events, errors: vec![] }
    }

    fn inst(id: &str, component: &str, props: Value, children: Vec<Value>) -> Value {
        json!({"id": id, "component_id": component, "props": props, "children": children})
    }

    fn workflow() -> Value {
        json!({
            "screens": {
                "s1": {"name": "Cart", "root": inst("i1", "c-page", json!({}), vec![
                    inst("i2", "c-button", json!({"p-size": "lg", "p-label": "Buy"}), vec![]),
                    inst("i3", "c-card", json!({}), vec![inst("i4", "c-button", json!({"p-size": "sm"}), vec![])]),
                ])},
                "s2": {"name": "Checkout", "root": inst("i5", "c-button", json!({"p-size": "md"}), vec![])},
                "s3": {"name": "Done", "root": inst("i6", "c-button", json!({}), vec![])},
                "s4": {"name": "Other", "root": inst("i7", "c-card", json!({"p-size": "lg"}), vec![])},
            },
            "edges": [
                {"id": "e1", "from": {"screen_id": "s1", "instance_id": "i2", "event_id": "ev-click"}, "to": {"screen_id": "s2"}},
                {"id": "e2", "from": {"screen_id": "s2", "instance_id": "i5", "event_id": "ev-click"}, "to": {"screen_id": "s3"}},
                {"id": "e3", "from": {"screen_id": "s4", "instance_id": "i7", "event_id": "ev-click"}, "to": {"screen_id": "s1"}},
            ]
        })
    }

    #[test]
    fn lists_exactly_what_breaks() {
        let click = Event { id: "ev-click".into(), name: "onClick".into(), description: None, payload: None };
        let current = button(
            vec![prop("p-size", "size", "'sm' | 'md' | 'lg'"), prop("p-label", "label", "string")],
            vec![click.clone()],
        );
        let wf = workflow();
        // Unchanged: nothing to confirm, usage counted.
        let same = analyze(&current, &current, &wf);
        assert!(!same.needs_confirmation && same.changes.is_empty());
        assert_eq!(same.instances, 4);
        let size = &same.usage[0];
        assert_eq!((size.instances, size.screens), (3, 2), "set on i2, i4 (Cart) and i5 (Checkout)");
        assert_eq!((same.usage[2].edges, same.usage[2].screens), (2, 2), "e3 starts from a card, not a button");
        assert!(!may_break(&current, &current));

        // Retype size to 'sm' | 'md' (lg no longer fits), remove label, remove onClick.
        let proposed = button(vec![prop("p-size", "size", "\"sm\" | \"md\"")], vec![]);
        assert!(may_break(&current, &proposed));
        let impact = analyze(&current, &proposed, &wf);
        let kinds: Vec<_> = impact.changes.iter().map(|c| (c.kind, c.affected.len())).collect();
        assert_eq!(kinds, [("prop_retyped", 1), ("prop_removed", 1), ("event_removed", 2)]);
        assert_eq!(impact.changes[0].affected[0].value.as_deref(), Some("lg"));
        assert_eq!(impact.changes[0].affected[0].screen_name, "Cart");
        let e = &impact.changes[2].affected[0];
        assert_eq!((e.edge_id.as_deref(), e.to_screen_name.as_deref()), (Some("e1"), Some("Checkout")));
        assert_eq!(impact.counts, Counts { screens: 2, instances: 2, values: 2, edges: 2 });
        assert!(impact.needs_confirmation);

        // Quoting differently is not a retype.
        let requoted = button(
            vec![prop("p-size", "size", "\"sm\"|\"md\"|\"lg\""), prop("p-label", "label", "string")],
            vec![click],
        );
        assert!(analyze(&current, &requoted, &wf).changes.is_empty());
        assert!(!may_break(&current, &requoted));
    }

    #[test]
    fn deleting_lists_every_instance_its_values_and_edges() {
        let click = Event { id: "ev-click".into(), name: "onClick".into(), description: None, payload: None };
        let current = button(vec![prop("p-size", "size", "string")], vec![click]);
        let impact = removal(&current, &workflow());
        let kinds: Vec<_> = impact.changes.iter().map(|c| (c.kind, c.affected.len())).collect();
        assert_eq!(kinds, [("component_removed", 4), ("prop_removed", 3), ("event_removed", 2)]);
        let placed: Vec<_> = impact.changes[0].affected.iter().map(|a| a.instance_id.as_str()).collect();
        assert_eq!(placed, ["i2", "i4", "i5", "i6"], "Cart, Checkout, Done");
        assert_eq!(impact.counts, Counts { screens: 3, instances: 4, values: 3, edges: 2 });
        assert!(impact.needs_confirmation);
        // Placed nowhere: nothing to confirm.
        let unused = Component { id: Some("c-unused".into()), ..current };
        let none = removal(&unused, &workflow());
        assert!(!none.needs_confirmation && none.changes.iter().all(|c| c.affected.is_empty()));
    }

    #[test]
    fn malformed_documents_are_read_as_far_as_they_go() {
        let current = button(vec![prop("p", "x", "string")], vec![]);
        for wf in [json!(null), json!({"screens": []}), json!({"screens": {"s": {"root": 5}}, "edges": {}})] {
            let impact = analyze(&current, &button(vec![], vec![]), &wf);
            assert_eq!(impact.instances, 0);
        }
        // Deep nesting does not recurse.
        let mut deep = inst("leaf", "c-button", json!({"p": "v"}), vec![]);
        for i in 0..50_000 {
            // Built by moving, not with json! (which serializes its arguments, recursively).
            let mut m = serde_json::Map::new();
            m.insert("id".into(), Value::String(format!("n{i}")));
            m.insert("component_id".into(), Value::String("c-box".into()));
            m.insert("children".into(), Value::Array(vec![deep]));
            deep = Value::Object(m);
        }
        let mut wf = json!({"screens": {"s": {"name": "S"}}, "edges": []});
        wf["screens"]["s"]["root"] = deep;
        let impact = analyze(&current, &button(vec![], vec![]), &wf);
        assert_eq!(impact.counts.values, 1);
        std::mem::forget(wf); // serde_json drops a value recursively
    }
}
