// The schematic of one screen on its own page: the component tree drawn as nested boxes (the
// canvas' schematic, at full size), with text props edited in place and instances dragged to
// reorder or nest them. Every drag has a keyboard equivalent (Alt+arrows here, buttons in the
// instance list), and both go through `moveInstance`.
import { Y, h } from './live.js';

/**
 * Move an instance (`item`: `{ inst, parent, index }` from `instancesOf`) `before`, `after` or
 * `inside` another (`target`). Yjs has no move: the instance is copied (same id, so edges from its
 * events still start there) and the original removed, in one transaction. Returns false — and
 * changes nothing — for the root, a move into itself or its own subtree, or beside the root.
 */
export function moveInstance(doc, item, target, zone) {
  if (!item.parent || !target || contains(item.inst, target.inst)) return false;
  if (zone !== 'inside' && !target.parent) return false;
  doc.transact(() => {
    let dest;
    let at;
    if (zone === 'inside') {
      dest = target.inst.get('children');
      if (!(dest instanceof Y.Array)) {
        dest = new Y.Array();
        target.inst.set('children', dest);
      }
      at = dest.length;
    } else {
      dest = target.parent;
      at = target.index + (zone === 'after' ? 1 : 0);
    }
    if (dest === item.parent && item.index < at) at -= 1;
    const copy = item.inst.clone();
    item.parent.delete(item.index, 1);
    dest.insert(Math.min(at, dest.length), [copy]);
  });
  return true;
}

/** Whether `inner` is `outer` or somewhere inside it. */
function contains(outer, inner, depth = 0) {
  if (outer === inner) return true;
  const children = outer.get('children');
  if (!(children instanceof Y.Array) || depth > 64) return false;
  return children.toArray().some((c) => c instanceof Y.Map && contains(c, inner, depth + 1));
}

/**
 * The four keyboard moves of an instance, each `{ key, label, target, zone }` or absent when it
 * cannot move that way: up/down among its siblings, into the sibling before it, out of its parent.
 */
export function movesOf(item, siblings, owner, name, nameOf) {
  if (!item.parent) return [];
  const before = siblings[item.index - 1];
  const after = siblings[item.index + 1];
  const out = [];
  if (before) out.push({ key: 'ArrowUp', label: `Move ${name} up`, cls: 'move-up', target: before, zone: 'before' });
  if (after) out.push({ key: 'ArrowDown', label: `Move ${name} down`, cls: 'move-down', target: after, zone: 'after' });
  if (before) out.push({ key: 'ArrowRight', label: `Put ${name} inside ${nameOf(before.inst)}`, cls: 'move-in', target: before, zone: 'inside' });
  if (owner && owner.parent) out.push({ key: 'ArrowLeft', label: `Move ${name} out of ${nameOf(owner.inst)}`, cls: 'move-out', target: owner, zone: 'after' });
  return out;
}

/**
 * Draw the schematic of `items` (every instance, depth first, as `instancesOf` gives them, each
 * with `owner`: the item whose children hold it) into `box`.
 * `ctx`: `{ componentOf, nameOf, canEdit, canEditText, setText(inst, prop, text), move(item,
 * target, zone), moves(item) , focusInstance(id) }`.
 */
export function renderSchematic(box, items, ctx) {
  const childrenOf = new Map();
  for (const it of items) {
    if (!it.owner) continue;
    if (!childrenOf.has(it.owner)) childrenOf.set(it.owner, []);
    childrenOf.get(it.owner).push(it);
  }
  let dragged = null;

  const draw = (it) => {
    const inst = it.inst;
    const id = String(inst.get('id') || '');
    const component = ctx.componentOf(inst);
    const name = ctx.nameOf(inst);
    const values = inst.get('props') instanceof Y.Map ? inst.get('props') : null;
    const node = h('div', { class: `sbox${component ? '' : ' unknown'}`, 'data-id': id });
    const moves = ctx.canEdit ? ctx.moves(it) : [];
    const keys = moves.map((m) => `Alt+${m.key}`).join(' ');
    const head = h('button', {
      type: 'button', class: 'sbox-head', id: `sh-${id}`, 'data-id': id,
      'aria-label': `${name}${it.parent ? '' : ' (root)'}${moves.length ? '. Alt with the arrow keys moves it' : ''}`,
      'aria-keyshortcuts': keys || undefined,
      draggable: ctx.canEdit && it.parent ? 'true' : undefined,
      text: name,
    });
    head.addEventListener('click', () => ctx.focusInstance(id));
    head.addEventListener('keydown', (ev) => {
      if (!ev.altKey || ev.ctrlKey || ev.metaKey) return;
      const m = moves.find((x) => x.key === ev.key);
      if (!m) return;
      ev.preventDefault();
      ctx.move(it, m.target, m.zone, m.label);
    });
    if (ctx.canEdit && it.parent) {
      head.addEventListener('dragstart', (ev) => {
        dragged = it;
        ev.dataTransfer.effectAllowed = 'move';
        ev.dataTransfer.setData('text/plain', name);
        node.classList.add('dragging');
      });
      head.addEventListener('dragend', () => { dragged = null; node.classList.remove('dragging'); clearDrop(); });
    }
    if (ctx.canEdit) {
      node.addEventListener('dragover', (ev) => {
        if (!dragged || ev.target.closest('.sbox') !== node) return;
        const zone = zoneAt(node, ev.clientY, !!it.parent);
        if (contains(dragged.inst, inst)) return;
        ev.preventDefault();
        ev.dataTransfer.dropEffect = 'move';
        clearDrop();
        node.classList.add(`drop-${zone}`);
      });
      node.addEventListener('drop', (ev) => {
        if (!dragged || ev.target.closest('.sbox') !== node) return;
        ev.preventDefault();
        const zone = zoneAt(node, ev.clientY, !!it.parent);
        const what = ctx.nameOf(dragged.inst);
        const label = zone === 'inside' ? `Put ${what} inside ${name}` : `Moved ${what} ${zone} ${name}`;
        const from = dragged;
        dragged = null;
        clearDrop();
        ctx.move(from, it, zone, label);
      });
    }
    node.append(head);

    const props = component ? component.props : [];
    if (props.length) {
      const rows = h('dl', { class: 'sprops' });
      for (const p of props) {
        const raw = values ? values.get(p.id) : undefined;
        const value = raw === undefined ? '' : String(raw);
        const editable = p.textEditable && (ctx.canEdit || ctx.canEditText);
        rows.append(h('dt', { text: p.name }));
        if (editable) {
          const input = h('input', {
            id: `s-${id}-${p.id}`, class: 'inline-text', value, placeholder: shownDefault(p.default),
            'aria-label': `${p.name} of ${name} (text you can edit)`, autocomplete: 'off', maxlength: 4000,
          });
          input.value = value;
          const commit = () => { if (input.value !== value) ctx.setText(inst, p, input.value); };
          input.addEventListener('change', commit);
          input.addEventListener('keydown', (ev) => {
            if (ev.key === 'Enter') { ev.preventDefault(); commit(); }
            if (ev.key === 'Escape' && input.value !== value) { ev.preventDefault(); ev.stopPropagation(); input.value = value; }
          });
          rows.append(h('dd', { class: 'editable' }, input));
        } else {
          const shown = value || (p.default ? `${shownDefault(p.default)} (default)` : '—');
          rows.append(h('dd', { class: 'readonly' }, h('span', { text: shown }),
            h('span', { class: 'visually-hidden', text: ' (read-only for you)' })));
        }
      }
      node.append(rows);
    }
    const kids = childrenOf.get(it) || [];
    if (kids.length) node.append(h('div', { class: 'schildren' }, ...kids.map(draw)));
    return node;
  };

  const clearDrop = () => {
    for (const n of box.querySelectorAll('.drop-before, .drop-after, .drop-inside')) n.classList.remove('drop-before', 'drop-after', 'drop-inside');
  };

  const root = items[0];
  box.replaceChildren(root ? draw(root) : h('p', { class: 'hint', text: 'Nothing on this screen yet.' }));
}

/** A default as a person reads it: a string literal without its quotes. */
export function shownDefault(literal) {
  const text = String(literal || '');
  if (/^"(?:[^"\\]|\\.)*"$/.test(text)) {
    try { return JSON.parse(text); } catch (e) { /* shown as written */ }
  }
  return text;
}

/** Where a drop lands in a box: its top quarter before it, bottom quarter after, else inside. */
function zoneAt(node, y, movable) {
  const r = node.getBoundingClientRect();
  if (!movable) return 'inside';
  const q = Math.min(24, r.height / 4);
  if (y < r.top + q) return 'before';
  if (y > r.bottom - q) return 'after';
  return 'inside';
}
