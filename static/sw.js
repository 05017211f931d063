// vigil's service worker: it shows the alerts vigil pushes to this
// browser (Web Push, after "Notify me" on the page) while no tab is open,
// and opens the alert's page when a notification is clicked. It caches
// nothing: the dashboard is live or it is nothing.
'use strict';

self.addEventListener('push', (event) => {
  let m = { title: 'vigil', body: '' };
  if (event.data) {
    try {
      m = event.data.json();
    } catch {
      m = { title: 'vigil', body: event.data.text() }; // a receiver template that is not JSON
    }
  }
  const resolved = m.status === 'resolved';
  event.waitUntil(self.registration.showNotification(m.title || 'vigil', {
    body: m.body || '',
    tag: m.tag || undefined, // one notification per alert: its resolution replaces its firing
    renotify: !!m.tag && !resolved,
    requireInteraction: !!m.urgent, // a critical alert stays until it is seen
    icon: '/static/favicon.svg',
    data: { url: m.url || '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL(event.notification.data && event.notification.data.url || '/', self.location.origin);
  if (url.origin !== self.location.origin) url.href = self.location.origin + '/'; // only vigil's own pages
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const tab of tabs) {
      if (new URL(tab.url).origin === url.origin && 'focus' in tab) {
        await tab.focus();
        // A tab this worker controls goes to the alert; one it does not
        // (opened before it was) cannot be moved: a new one opens.
        const moved = 'navigate' in tab ? await tab.navigate(url.href).catch(() => null) : null;
        if (!moved) await self.clients.openWindow(url.href);
        return;
      }
    }
    await self.clients.openWindow(url.href);
  })());
});

// The browser renews a subscription now and then: vigil is told of the
// new one, which replaces the old (and keeps the person's choice).
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    const old = event.oldSubscription;
    const fresh = event.newSubscription || (old && await self.registration.pushManager.subscribe(old.options));
    if (!fresh) return;
    await fetch('/api/v1/push/subscriptions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin',
      body: JSON.stringify({ ...fresh.toJSON(), replaces: old ? old.endpoint : '' }),
    });
  })());
});
