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
