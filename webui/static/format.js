// Formatting shared by the views.
import { locale } from './i18n/index.js';

// formatSince says how long ago an ISO time was, e.g. "5 minutes ago", and
// returns it with the full local time for a title: [text, title]. A missing
// or zero time is ['—', ''].
export function formatSince(iso, now) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime()) || when.getFullYear() < 2000) return ['—', ''];
  const secs = Math.round((when.getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  const abs = Math.abs(secs);
  let text;
  if (abs < 60) text = rtf.format(secs, 'second');
  else if (abs < 3600) text = rtf.format(Math.round(secs / 60), 'minute');
  else if (abs < 86400) text = rtf.format(Math.round(secs / 3600), 'hour');
  else text = rtf.format(Math.round(secs / 86400), 'day');
  return [text, when.toLocaleString(locale())];
}

// formatBytes shows a size in bytes with binary units: "1.5 MiB".
export function formatBytes(n) {
  if (!(n >= 0)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  const nf = new Intl.NumberFormat(locale(), { maximumFractionDigits: i === 0 || n >= 100 ? 0 : 1 });
  return `${nf.format(n)} ${units[i]}`;
}

// formatRate shows bytes per second: "2.3 MiB/s".
export function formatRate(bps) {
  return `${formatBytes(bps > 0 ? bps : 0)}/s`;
}

// formatETA shows a duration in seconds as "1 h 5 min", "3 min 20 s" or
// "12 s"; an unknown or endless one as "—".
export function formatETA(secs) {
  if (!Number.isFinite(secs) || secs < 0) return '—';
  const s = Math.ceil(secs);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 100 * 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return '—';
}
