// Spec editor enhancements (the page works without them): autosave after a pause in typing,
// and "updated by someone else" notices from the project's live events. Nothing here ever
// replaces what the user typed: a conflict hands over to the server-rendered conflict view.
(function () {
  'use strict';
  const form = document.getElementById('editor');
  if (!form) return;
  const textarea = document.getElementById('content');
  // Structured view: each prop shows only the type field its kind uses (all are submitted).
  for (const select of form.querySelectorAll('select.kind')) {
    const row = select.closest('fieldset');
    const show = () => {
      const field = (suffix) => row.querySelector('[id$="-' + suffix + '"]').closest('.field');
      field('options').hidden = select.value !== 'oneof';
      field('custom').hidden = select.value !== 'custom';
    };
    select.addEventListener('change', show);
    show();
  }
  // A field with a problem, or the row an action just changed, gets the focus the server chose.
  const focus = form.querySelector('[autofocus]') || document.querySelector('#impact-title[autofocus]');
  if (focus) focus.focus();
  if (!textarea) {
    if (form.dataset.view === 'structured' && form.dataset.conflict !== 'true') structuredAutosave();
    return;
  }
  const base = form.querySelector('input[name=base_version]');
  const session = form.querySelector('input[name=session_id]').value;
  const csrf = form.querySelector('input[name=csrf_token]').value;
  const status = document.getElementById('autosave-status');
  const api = form.dataset.api;
  const events = form.dataset.events;
  const saveButton = form.querySelector('button[value=save]');
  if (form.dataset.conflict === 'true') return; // resolve the conflict by hand first
  let timer = null;
  let saving = false;
  let dirty = false;
  let stopped = false;

  function say(text) {
    status.textContent = text;
  }

  async function save() {
    if (saving || stopped || !dirty) return;
    saving = true;
    dirty = false;
    const content = textarea.value;
    try {
      const r = await fetch(api, {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify({ content, base_version: Number(base.value), session_id: session }),
      });
      const body = await r.json().catch(() => ({}));
      if (r.ok) {
        base.value = String(body.version);
        form.querySelector('#editor-hint').textContent =
          'Based on version ' + body.version + '. Saving creates a new version; the last 20 are kept.';
        const problems = (body.problems || []).length;
        say('Saved automatically as version ' + body.version + '.' +
          (problems ? ' It has ' + problems + ' problem(s) and is kept as a draft.' : ''));
        refreshPreview(body.version);
      } else if (r.status === 409) {
        stopped = true;
        say('Someone else saved version ' + (body.details && body.details.current_version) +
          '. Showing both texts…');
        // The server keeps both texts and offers the choices.
        form.requestSubmit(saveButton);
      } else {
        dirty = true;
        say('Not saved yet: ' + (body.message || r.status) + '. Retrying when you type.');
      }
    } catch (e) {
      dirty = true;
      say('Not saved yet: the server cannot be reached. Retrying when you type.');
    } finally {
      saving = false;
      if (dirty && !stopped) schedule();
    }
  }

  // The preview follows the saved text: rendered and sanitized by the server (the same
  // allow-list as every spec page), so nothing the text contains can run here.
  async function refreshPreview(version) {
    const preview = document.getElementById('preview');
    if (!preview) return;
    try {
      const r = await fetch(api + '/versions/' + version + '/preview', { credentials: 'same-origin' });
      if (r.ok) preview.innerHTML = (await r.json()).html;
    } catch (e) {
      // The preview catches up with the next save.
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(save, Number(form.dataset.delay || 2000));
  }

  textarea.addEventListener('input', () => {
    dirty = true;
    schedule();
  });
  form.addEventListener('submit', () => {
    stopped = true;
    clearTimeout(timer);
  });

  if (window.EventSource && events) {
    const source = new EventSource(events);
    source.addEventListener('spec_saved', (e) => {
      const ev = JSON.parse(e.data);
      if (ev.version > Number(base.value) && !saving) {
        say('Updated by ' + ev.by_name + ' (version ' + ev.version + '). Your text is unchanged; ' +
          'save to compare, or reload to take theirs.');
      }
    });
    // The default branch brought a new text of this spec while Arno holds edits of it.
    source.addEventListener('default_updated', (e) => {
      const ev = JSON.parse(e.data);
      say('The ' + ev.by_name + ' changed this spec (a merge or a push). Arno keeps the edited ' +
        'text; compare on the change request before merging.');
    });
    // Where my session branch stands (project-wide events; only mine matter here).
    const writeback = document.getElementById('writeback-status');
    source.addEventListener('writeback', (e) => {
      const ev = JSON.parse(e.data);
      if (!writeback || ev.by_handle !== writeback.dataset.handle) return;
      const branch = 'arno/' + ev.by_handle;
      const href = '/projects/' + form.dataset.project + '/changes/' + ev.by_handle;
      const text = {
        committed: 'Your saved changes are committed to ' + branch + '. ',
        pending: 'Some saved changes are still on their way to ' + branch + '. ',
        diverged: 'Your saved changes are not being written: ' + branch + ' changed outside Arno. ',
        failed: 'Writing to ' + branch + ' failed. ',
      }[ev.state];
      if (!text) return;
      writeback.textContent = text;
      const link = document.createElement('a');
      link.href = href;
      link.textContent = ev.state === 'diverged' ? 'Open the branch and decide' : 'Change request';
      writeback.appendChild(link);
      writeback.appendChild(document.createTextNode('.'));
    });
    window.addEventListener('beforeunload', () => source.close());
  }

  // The structured view autosaves the same way: the server applies the rows to the text, checks
  // them and saves; a change that breaks screens waits for the Save button (which lists what
  // breaks), a conflict goes to the server-rendered conflict view. After a save, every row
  // learns its position and id in the saved text, so the next save edits it instead of adding it.
  function structuredAutosave() {
    const status = document.getElementById('autosave-status');
    const base = form.querySelector('input[name=base_version]');
    const content = form.querySelector('input[name=content_json]');
    const saveButton = form.querySelector('button[value=save]');
    let timer = null;
    let saving = false;
    let dirty = false;
    let stopped = false;
    const say = (text) => { status.textContent = text; };
    function hidden(name, value) {
      let input = form.querySelector('input[type=hidden][name="' + name + '"]');
      if (value === null || value === undefined) {
        if (input) input.remove();
        return;
      }
      if (!input) {
        input = document.createElement('input');
        input.type = 'hidden';
        input.name = name;
        const row = form.querySelector('#' + name.split('.').slice(0, 2).join('-'));
        (row || form).appendChild(input);
      }
      input.value = String(value);
    }
    async function save() {
      if (saving || stopped || !dirty) return;
      saving = true;
      dirty = false;
      const data = new URLSearchParams(new FormData(form));
      data.set('action', 'autosave');
      try {
        // form.action would be the buttons named "action"
        const r = await fetch(form.getAttribute('action'), {
          method: 'POST', credentials: 'same-origin', headers: { Accept: 'application/json' }, body: data,
        });
        const body = await r.json().catch(() => ({}));
        if (r.ok && body.unchanged) {
          say('No changes to save.');
        } else if (r.ok) {
          base.value = String(body.version);
          content.value = JSON.stringify(body.content);
          body.rows.props.forEach((row, n) => { hidden('prop.' + n + '.src', row.src); hidden('prop.' + n + '.id', row.id); });
          body.rows.events.forEach((row, n) => { hidden('event.' + n + '.src', row.src); hidden('event.' + n + '.id', row.id); });
          const preview = document.getElementById('preview');
          if (preview) preview.innerHTML = body.preview_html; // rendered and sanitized by the server
          say('Saved automatically as version ' + body.version + '.');
        } else if (r.status === 400 && body.problems) {
          say('Not saved yet: ' + body.problems[0].message + ' (' + body.problems.length + ' problem(s); Save shows each).');
        } else if (r.status === 409 && body.code === 'impact') {
          say('Not saved automatically: this change affects ' + body.counts.screens +
            ' screen(s). Press Save to see what it breaks and decide.');
        } else if (r.status === 409) {
          stopped = true;
          say('Someone else saved version ' + body.current_version + '. Showing both texts…');
          form.requestSubmit(saveButton);
        } else {
          dirty = true;
          say('Not saved yet: ' + (body.message || r.status) + '. Retrying when you type.');
        }
      } catch (e) {
        dirty = true;
        say('Not saved yet: the server cannot be reached. Retrying when you type.');
      } finally {
        saving = false;
        if (dirty && !stopped) schedule();
      }
    }
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(save, Number(form.dataset.delay || 2000));
    }
    const changed = (e) => {
      if (!e.target.matches('input, textarea, select')) return;
      dirty = true;
      schedule();
    };
    form.addEventListener('input', changed);
    form.addEventListener('change', changed);
    form.addEventListener('submit', () => { stopped = true; clearTimeout(timer); });
  }
})();
