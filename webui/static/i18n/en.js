// English strings. Keys are grouped by view; {name} marks a parameter.
// A key missing here is shown as the key itself, so every key must exist.
export default {
  'app.name': 'catnest',
  'nav.label': 'Views',
  'nav.peers': 'Peers',

  'node.loading': 'Loading…',
  'node.copyId': 'Full node ID: {id} — click to copy',
  'node.copied': 'Node ID copied',
  'node.copyFailed': 'Could not copy; the ID is selected',
  'node.error': 'Could not reach the node: {msg}',

  'conn.live': 'Live',
  'conn.connecting': 'Reconnecting…',
  'conn.downHint': 'Lost the connection to the node. Retrying — the data below may be out of date.',

  'lang.label': 'Language',

  'peers.title': 'Connected peers',
  'peers.count.one': '{n} link',
  'peers.count.other': '{n} links',
  'peers.col.name': 'Name',
  'peers.col.id': 'Node ID',
  'peers.col.rtt': 'Round trip',
  'peers.col.direction': 'Direction',
  'peers.col.since': 'Connected',
  'peers.outbound': 'Outgoing',
  'peers.inbound': 'Incoming',
  'peers.unnamed': '(no name)',
  'peers.rttUnknown': '—',
  'peers.empty.title': 'No peers yet',
  'peers.empty.body': 'This node is looking for other nodes. They appear here as soon as a link is up.',

  'footer.version': 'catnest {version}',
};
