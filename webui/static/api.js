// Talking to the node: JSON requests and the shared event stream.

// failure is the error for a non-2xx answer: the server's {"error": ...}
// message, or the status line if the body is not that; .status has the
// status.
export async function failure(res) {
  let msg = `${res.status} ${res.statusText}`;
  try {
    msg = (await res.json()).error || msg;
  } catch {
    // not JSON: keep the status line
  }
  const err = new Error(msg);
  err.status = res.status;
  return err;
}

// getJSON fetches a JSON API path; a non-2xx answer throws its failure.
export async function getJSON(path, { signal } = {}) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, signal });
  if (!res.ok) throw await failure(res);
  return res.json();
}

// served says whether the node serves a JSON API path: a view's
// available() asks it of a path its service adds (404 without it).
export async function served(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' } });
  return res.status !== 404;
}

// EventStream is the page's one connection to /api/events. Views subscribe
// to named events with on(); the last value of each event is kept, so a view
// that mounts later renders at once. Events of the names in keep are kept
// from the start: the node sends those snapshots when the stream connects
// and then only on a change or every few seconds, so one sent before a view
// listened would otherwise be missed until then. EventSource reconnects by
// itself after a network error; when it gives up (an HTTP error), we start
// a new one.
export class EventStream {
  constructor(url, keep = []) {
    this.url = url;
    this.handlers = new Map(keep.map((name) => [name, new Set()])); // event name → Set of fns
    this.latest = new Map(); // event name → last data
    this.statusFns = new Set();
    this.state = 'connecting';
    this.retryTimer = 0;
    this.connect();
  }

  connect() {
    const es = new EventSource(this.url);
    this.es = es;
    es.onopen = () => this.setState('open');
    es.onerror = () => {
      this.setState('connecting');
      if (es.readyState === EventSource.CLOSED) {
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.connect(), 3000);
      }
    };
    for (const name of this.handlers.keys()) this.listen(name);
  }

  listen(name) {
    this.es.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        console.error(`bad ${name} event`, err);
        return;
      }
      this.latest.set(name, data);
      for (const fn of this.handlers.get(name) || []) fn(data);
    });
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const fn of this.statusFns) fn(state);
  }

  // on calls fn(data) for every event of this name, and at once with the
  // last one if there was one. It returns an unsubscribe func.
  on(name, fn) {
    if (!this.handlers.has(name)) {
      this.handlers.set(name, new Set());
      this.listen(name);
    }
    this.handlers.get(name).add(fn);
    if (this.latest.has(name)) fn(this.latest.get(name));
    return () => this.handlers.get(name).delete(fn);
  }

  // onStatus calls fn('open' | 'connecting') on every change of the
  // connection; it returns an unsubscribe func.
  onStatus(fn) {
    this.statusFns.add(fn);
    return () => this.statusFns.delete(fn);
  }
}

// sendJSON does a state-changing request with an optional JSON body and
// returns the decoded answer, or null for 204 No Content; a non-2xx answer
// throws its failure.
export async function sendJSON(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : res.json();
}
