// 简体中文. Same keys as en.js.
export default {
  'app.name': 'catnest',
  'nav.label': '视图',
  'nav.peers': '对等节点',

  'node.loading': '加载中…',
  'node.copyId': '完整节点 ID：{id}（点击复制）',
  'node.copied': '已复制节点 ID',
  'node.copyFailed': '无法复制，已选中 ID',
  'node.error': '无法连接到节点：{msg}',

  'conn.live': '实时',
  'conn.connecting': '正在重新连接…',
  'conn.downHint': '与节点的连接已断开，正在重试，下方数据可能不是最新的。',

  'lang.label': '语言',

  'peers.title': '已连接的对等节点',
  'peers.count.one': '{n} 条连接',
  'peers.count.other': '{n} 条连接',
  'peers.col.name': '名称',
  'peers.col.id': '节点 ID',
  'peers.col.rtt': '往返时延',
  'peers.col.direction': '方向',
  'peers.col.since': '连接时间',
  'peers.outbound': '出站',
  'peers.inbound': '入站',
  'peers.unnamed': '（未命名）',
  'peers.rttUnknown': '—',
  'peers.empty.title': '暂无对等节点',
  'peers.empty.body': '本节点正在寻找其他节点，连接建立后会立即显示在这里。',

  'footer.version': 'catnest {version}',
};
