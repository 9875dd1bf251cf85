// Spec editor enhancements (the page works without them): autosave after a pause in typing,
// and "updated by someone else" notices from the project's live events. Nothing here ever
// replaces what the user typed: a conflict hands over to the server-rendered conflict view.
(function () {
  'use strict';
  const form = document.getElementById('editor');
  if (!form) return;
  const textarea = document.getElementById('content');
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
        say('Saved automatically as version ' + body.version + '.');
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
    window.addEventListener('beforeunload', () => source.close());
  }
})();
