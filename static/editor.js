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
  if (!textarea) return; // the structured view saves with its buttons
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
})();
