// A screen's own page: where a screen is edited ("edit FROM the screen"). The component instances
// as a tree (any depth), their prop values, the edges that start at their events, and the screens
// that lead here — all live. Esc returns to the canvas with this screen selected.
import {
  Y, connectLive, watchComponents, componentChoices, instancesOf, missingProps, newInstance, deleteScreen, people, colorFor, screenName, h,
} from './live.js';
import { moveInstance, movesOf, renderSchematic, shownDefault } from './schematic.js';

export function startScreen(el) {
  const slug = el.dataset.slug;
  const screenId = el.dataset.screen;
  const canEdit = el.dataset.canEdit === 'true';
  const canEditText = el.dataset.canEditText === 'true';
  const me = { name: el.dataset.userName, handle: el.dataset.userHandle, color: colorFor(el.dataset.userHandle) };
  const canvasUrl = `/projects/${encodeURIComponent(slug)}/workflow#screen=${encodeURIComponent(screenId)}`;

  const status = document.getElementById('workflow-status');
  const alertBox = document.getElementById('workflow-alert');
  const title = document.getElementById('screen-title');
  const crumb = document.getElementById('crumb-screen');
  const tree = document.getElementById('instances');
  const schematic = document.getElementById('schematic');
  const missingBox = document.getElementById('screen-missing');
  const presenceList = document.getElementById('presence');
  const incomingList = document.getElementById('incoming');
  let gone = false;

  const components = watchComponents(el, () => {
    choices = componentChoices(components);
    render();
    status.textContent = 'A component changed; this screen shows its new spec.';
  });
  let choices = componentChoices(components);
  const live = connectLive(el, {
    presence: { user: me, screen: screenId },
    onChange: render,
    onPresence: renderPresence,
    onStatus: (text) => { status.textContent = text; },
    onRefused: (reason) => {
      alertBox.textContent = `The server refused your change: ${reason}. The screen was reloaded from the server.`;
      alertBox.hidden = false;
    },
  });

  const screen = () => {
    const s = live.screens.get(screenId);
    return s instanceof Y.Map ? s : null;
  };
  const componentOf = (inst) => components.byId.get(inst.get('component_id'));
  const componentName = (inst) => {
    const c = componentOf(inst);
    if (!c) return 'Unknown component';
    // Someone else is creating it: drawn here, not merged yet (docs/projects.md, branch-aware view).
    if (c.mark === 'deleted') return `${c.name} (deleted by you, not merged yet)`;
    return c.source === 'unmerged' ? `${c.name} (unmerged, by ${c.unmerged_by.join(', ') || 'someone'})` : c.name;
  };

  // ---- rendering ------------------------------------------------------------------------------

  function render() {
    const s = screen();
    if (!s) {
      if (el.dataset.synced === 'true' && !gone) {
        gone = true;
        alertBox.textContent = 'This screen was deleted. Nothing here can be edited; return to the canvas.';
        alertBox.hidden = false;
        for (const f of document.querySelectorAll('#screen-page form, #screen-page button')) f.hidden = true;
        tree.replaceChildren();
      }
      return;
    }
    const name = screenName(s);
    title.textContent = name;
    crumb.textContent = name;
    document.title = `${name} · Workflow · ${el.dataset.projectName}`;
    const rename = document.getElementById('rename');
    if (rename && document.activeElement !== rename) rename.value = name;
    const presentation = document.getElementById('presentation');
    if (presentation && document.activeElement !== presentation) presentation.value = String(s.get('presentation') || 'page');

    // Keep what someone is typing (and where) across a re-render caused by someone else's change.
    const active = document.activeElement;
    const draft = active && (tree.contains(active) || schematic.contains(active)) && active.id
      ? { id: active.id, value: active.value, start: active.selectionStart, end: active.selectionEnd } : null;
    const instances = instancesOf(s);
    const byParent = new Map();
    const ownerOf = new Map();
    for (const i of instances) {
      const key = i.parent;
      if (!byParent.has(key)) byParent.set(key, []);
      byParent.get(key).push(i);
      const children = i.inst.get('children');
      if (children instanceof Y.Array) ownerOf.set(children, i);
    }
    for (const i of instances) i.owner = i.parent ? ownerOf.get(i.parent) || null : null;
    const movesFor = (item) => movesOf(item, byParent.get(item.parent) || [], item.owner, componentName(item.inst), componentName);
    const root = instances[0];
    tree.replaceChildren(...(root ? [instanceItem(root, 'i0', byParent, movesFor)] : []));
    if (!root) tree.append(h('li', { text: 'This screen has no component yet.' }));
    renderSchematic(schematic, instances, {
      componentOf, nameOf: componentName, canEdit, canEditText, moves: movesFor,
      move: (item, target, zone, label) => move(item, target, zone, label, 'schematic'),
      setText: (inst, prop, text) => {
        const values = inst.get('props');
        if (!(values instanceof Y.Map)) return;
        values.set(prop.id, text);
        status.textContent = `Changed ${prop.name} of ${(componentOf(inst) || {}).name || 'the component'}.`;
      },
      focusInstance: (id) => {
        const heading = tree.querySelector(`.instance[data-id="${CSS.escape(id)}"] > h3`);
        if (heading) { heading.focus(); heading.scrollIntoView({ block: 'nearest' }); }
      },
    });
    if (draft) {
      const again = document.getElementById(draft.id);
      if (again) {
        if ('value' in again && draft.value !== undefined) again.value = draft.value;
        again.focus();
        if (draft.start !== null && draft.start !== undefined && again.setSelectionRange) {
          try { again.setSelectionRange(draft.start, draft.end); } catch (e) { /* not a text input */ }
        }
      }
    }

    // Instances whose component lost a prop are flagged, never silently dropped.
    const missing = missingProps(s, components.byId);
    missingBox.hidden = missing.length === 0;
    missingBox.textContent = missing.length
      ? `This screen sets ${missing.length} prop(s) their components no longer have: ${missing.join(', ')}` : '';

    // Screens that lead here.
    const incoming = [];
    live.edges.forEach((e) => {
      if (!(e instanceof Y.Map) || (e.get('to') || {}).screen_id !== screenId) return;
      const from = live.screens.get((e.get('from') || {}).screen_id);
      if (from instanceof Y.Map) incoming.push({ id: (e.get('from') || {}).screen_id, name: screenName(from) });
    });
    incomingList.replaceChildren(...(incoming.length
      ? incoming.map((i) => h('li', {}, h('a', { href: `/projects/${encodeURIComponent(slug)}/workflow/screens/${encodeURIComponent(i.id)}`, text: i.name })))
      : [h('li', { text: 'No screen leads here yet.' })]));
    renderPresence();
  }

  /** One instance and, nested, its children. `path` makes stable element ids ("i0-2-1"). */
  function instanceItem(item, path, byParent, moves) {
    const { inst, parent, index } = item;
    const component = componentOf(inst);
    const name = componentName(inst);
    const values = inst.get('props') instanceof Y.Map ? inst.get('props') : null;
    const headingId = `${path}-title`;
    const section = h('div', { class: 'instance', role: 'group', 'aria-labelledby': headingId, 'data-path': path, 'data-id': inst.get('id') });
    section.append(h('h3', { id: headingId, tabindex: '-1', text: parent ? name : `${name} (root)` }));

    // Props: Makers set any; Editors the ones marked textEditable.
    const props = component ? component.props : [];
    if (props.length) {
      const fields = h('div', { class: 'props' });
      for (const p of props) {
        const id = `${path}-p-${p.id}`;
        const editable = canEdit || (canEditText && p.textEditable);
        const current = values && values.get(p.id) !== undefined ? String(values.get(p.id)) : '';
        const input = h('input', { id, value: current, placeholder: shownDefault(p.default), disabled: !editable, autocomplete: 'off' });
        input.value = current;
        input.addEventListener('change', () => { if (values) values.set(p.id, input.value); });
        input.addEventListener('keydown', (ev) => {
          // Esc in a changed field cancels the change (a second Esc leaves the screen).
          if (ev.key === 'Escape' && input.value !== current) { ev.preventDefault(); input.value = current; }
        });
        fields.append(h('div', { class: 'field' }, h('label', { for: id, text: `${p.name}${p.textEditable ? ' (text)' : ''}` }), input));
      }
      section.append(fields);
    }
    if (values) {
      const lost = [...values.keys()].filter((k) => component && !component.props.some((p) => p.id === k));
      if (lost.length) section.append(h('p', { class: 'alert error', text: `Sets prop(s) ${name} no longer has: ${lost.join(', ')}` }));
    }

    // Events: where each leads, and (Makers) connect one to a screen.
    const events = component ? component.events : [];
    if (events.length) {
      const list = h('ul', { class: 'events', 'aria-label': `Events of ${name}` });
      for (const ev of events) {
        const li = h('li', {}, h('strong', { text: ev.name }), ' ');
        const leads = [];
        live.edges.forEach((e, i) => {
          if (!(e instanceof Y.Map)) return;
          const from = e.get('from') || {};
          if (from.screen_id === screenId && from.instance_id === inst.get('id') && from.event_id === ev.id) leads.push({ e, i });
        });
        for (const { e } of leads) {
          const to = live.screens.get((e.get('to') || {}).screen_id);
          li.append(`→ ${to instanceof Y.Map ? screenName(to) : 'a deleted screen'} `);
          if (canEdit) {
            li.append(h('button', {
              type: 'button', class: 'link-button', text: `Disconnect ${ev.name} from ${to instanceof Y.Map ? screenName(to) : 'the deleted screen'}`,
              onclick: () => {
                const at = live.edges.toArray().indexOf(e);
                if (at >= 0) live.edges.delete(at, 1);
                status.textContent = `Disconnected ${ev.name}.`;
              },
            }), ' ');
          }
        }
        if (!leads.length) li.append(h('span', { class: 'hint', text: 'leads nowhere yet' }));
        if (canEdit) li.append(connectForm(inst, ev, `${path}-e-${ev.id}`));
        list.append(li);
      }
      section.append(list);
    }

    if (canEdit) {
      const actions = h('div', { class: 'instance-actions' });
      actions.append(placeForm(inst, name, `${path}-place`));
      if (parent) {
        const here = moves(item);
        actions.append(...here.map((m) => h('button', {
          type: 'button', class: `secondary ${m.cls}`, text: m.label, onclick: () => move(item, m.target, m.zone, m.label, m.cls),
        })));
        actions.append(
          h('button', {
            type: 'button', class: 'secondary', text: `Remove ${name}`,
            onclick: () => {
              live.doc.transact(() => {
                removeEdgesFrom(inst);
                parent.delete(index, 1);
              });
              status.textContent = `Removed ${name} from the screen.`;
              title.focus();
            },
          }),
        );
      }
      section.append(actions);
    }

    const children = (byParent.get(inst.get('children')) || []);
    if (children.length) {
      section.append(h('ul', { class: 'instance-tree', 'aria-label': `Inside ${name}` },
        ...children.map((c) => instanceItem(c, `${path}-${c.index}`, byParent, moves))));
    }
    return h('li', {}, section);
  }

  /**
   * Reorder or nest an instance (drag in the schematic, Alt+arrows there, buttons in the list),
   * then keep the focus on it where it now is: `where` is 'schematic' or the class of the list's
   * button that asked.
   */
  function move(item, target, zone, label, where) {
    const id = item.inst.get('id');
    if (!moveInstance(live.doc, item, target, zone)) {
      status.textContent = `${componentName(item.inst)} cannot move there.`;
      return;
    }
    status.textContent = `${label.replace(/^Move /, 'Moved ')}.`;
    let again = null;
    if (where === 'schematic') again = document.getElementById(`sh-${id}`);
    else {
      // The same button if it still applies (moving down twice), else the instance's heading.
      const section = tree.querySelector(`.instance[data-id="${CSS.escape(id)}"]`);
      again = section && (section.querySelector(`:scope > .instance-actions > button.${where}`) || section.querySelector(':scope > h3'));
    }
    if (again) again.focus();
  }

  /** Edges that start at an instance or anything inside it (removed with it). */
  function removeEdgesFrom(inst) {
    const ids = new Set();
    const visit = (i, depth) => {
      if (!(i instanceof Y.Map) || depth > 64) return;
      ids.add(i.get('id'));
      const c = i.get('children');
      if (c instanceof Y.Array) c.forEach((x) => visit(x, depth + 1));
    };
    visit(inst, 0);
    for (let i = live.edges.length - 1; i >= 0; i--) {
      const e = live.edges.get(i);
      const from = e instanceof Y.Map ? e.get('from') || {} : {};
      if (from.screen_id === screenId && ids.has(from.instance_id)) live.edges.delete(i, 1);
    }
  }

  function connectForm(inst, ev, id) {
    const select = h('select', { id });
    live.screens.forEach((other, otherId) => {
      if (other instanceof Y.Map && otherId !== screenId) select.append(new Option(screenName(other), otherId));
    });
    if (!select.options.length) return h('span', { class: 'hint', text: ' (add another screen on the canvas to connect it)' });
    const form = h('form', { class: 'inline-form' },
      h('label', { for: id, text: `When ${ev.name}, go to` }), select,
      h('button', { type: 'submit', class: 'secondary', text: `Connect ${ev.name}` }));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const edge = new Y.Map();
      edge.set('id', crypto.randomUUID());
      edge.set('from', { screen_id: screenId, instance_id: inst.get('id'), event_id: ev.id });
      edge.set('to', { screen_id: select.value });
      edge.set('action', 'navigate');
      live.edges.push([edge]);
      status.textContent = `${ev.name} now goes to ${select.options[select.selectedIndex].text}.`;
    });
    return form;
  }

  function placeForm(inst, name, id) {
    // One shared list of choices (live.js): typing filters it, however many components there are.
    const field = h('input', { id, list: 'component-choices', autocomplete: 'off', maxlength: 300 });
    if (choices.labels.length === 1) field.value = choices.labels[0];
    const form = h('form', { class: 'inline-form' },
      h('label', { for: id, text: `Place inside ${name}` }), field,
      h('button', { type: 'submit', class: 'secondary', text: 'Place' }));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const componentId = choices.resolve(field.value);
      if (!componentId) {
        field.setAttribute('aria-invalid', 'true');
        status.textContent = field.value.trim()
          ? `No component is called ${field.value.trim()}: pick one from the list.` : 'Type the name of the component to place.';
        field.focus();
        return;
      }
      let children = inst.get('children');
      const placed = newInstance(componentId);
      const label = field.value.trim();
      live.doc.transact(() => {
        if (!(children instanceof Y.Array)) {
          children = new Y.Array();
          inst.set('children', children);
        }
        children.push([placed]);
      });
      status.textContent = `Placed ${label} inside ${name}.`;
    });
    return form;
  }

  function renderPresence() {
    const everyone = people(live);
    const here = everyone.filter((p) => p.screen === screenId);
    const elsewhere = everyone.filter((p) => p.screen !== screenId);
    presenceList.replaceChildren(
      ...here.map((p) => { const li = h('li', { text: `${p.user.name} — on this screen` }); li.style.borderColor = p.user.color; return li; }),
      ...elsewhere.map((p) => {
        const s = p.screen && live.screens.get(p.screen);
        const li = h('li', { text: `${p.user.name} — ${s instanceof Y.Map ? `on ${screenName(s)}` : 'on the canvas'}` });
        li.style.borderColor = p.user.color;
        return li;
      }),
    );
  }

  // ---- the screen itself: name, presentation, delete ----------------------------------------------

  const renameForm = document.getElementById('rename-form');
  if (canEdit && renameForm) {
    renameForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const s = screen();
      const name = document.getElementById('rename').value.trim();
      if (s && name) {
        s.set('name', name);
        status.textContent = `Renamed to ${name}.`;
      }
    });
    document.getElementById('presentation').addEventListener('change', (ev) => {
      const s = screen();
      if (s) s.set('presentation', ev.target.value);
    });
    document.getElementById('delete-screen').addEventListener('click', () => {
      if (!screen()) return;
      if (!window.confirm(`Delete the screen ${screenName(screen())} and every edge from or to it?`)) return;
      deleteScreen(live, screenId);
      location.href = `/projects/${encodeURIComponent(slug)}/workflow`;
    });
  }

  // Esc returns to the canvas, where this screen is selected.
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || ev.defaultPrevented) return;
    ev.preventDefault();
    location.href = canvasUrl;
  });
}
