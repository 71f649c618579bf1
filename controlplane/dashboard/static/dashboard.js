// TraceLoom dashboard: live updates over server-sent events, and a confirm
// before deleting. Everything else is plain server-rendered HTML.
'use strict';

function follow(element) {
  const source = new EventSource(element.dataset.live);
  source.addEventListener('update', (event) => {
    const parts = JSON.parse(event.data);
    for (const [id, html] of Object.entries(parts)) {
      const target = document.getElementById(id);
      if (target) target.innerHTML = html;
    }
  });
  source.addEventListener('done', () => {
    source.close();
    element.removeAttribute('data-live');
    document.documentElement.dataset.settled = 'true';
  });
  source.addEventListener('signedout', () => {
    source.close();
    window.location.assign('/login?next=' + encodeURIComponent(window.location.pathname));
  });
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('[data-live]').forEach(follow);
  if (!document.querySelector('[data-live]')) {
    document.documentElement.dataset.settled = 'true';
  }
  document.querySelectorAll('form[data-confirm]').forEach((form) => {
    form.addEventListener('submit', (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
