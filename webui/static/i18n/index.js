// i18n: the dictionaries, the current language and how to apply it.
//
// The language comes from localStorage when the user picked one, else from
// navigator.language (zh* → Chinese, anything else → English).
import en from './en.js';
import zh from './zh.js';

// languages: code → dictionary and the BCP 47 tag used for <html lang> and Intl.
export const languages = {
  en: { dict: en, tag: 'en' },
  zh: { dict: zh, tag: 'zh-CN' },
};

const storageKey = 'catnest.lang';
const listeners = new Set();
let current = detect();

function stored() {
  try {
    return localStorage.getItem(storageKey);
  } catch {
    return null; // storage disabled
  }
}

// detect returns the language to start with.
export function detect() {
  const s = stored();
  if (s && s in languages) return s;
  const nav = (navigator.language || 'en').toLowerCase();
  return nav.startsWith('zh') ? 'zh' : 'en';
}

// lang is the current language code ('en' or 'zh').
export function lang() {
  return current;
}

// locale is the BCP 47 tag of the current language, for Intl.
export function locale() {
  return languages[current].tag;
}

// setLang switches the language, remembers the choice and tells listeners.
export function setLang(code) {
  if (!(code in languages)) return;
  current = code;
  try {
    localStorage.setItem(storageKey, code);
  } catch {
    // not remembered; still switch
  }
  apply();
  for (const fn of listeners) fn(code);
}

// onLangChange calls fn after every switch; it returns an unsubscribe func.
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

// t returns the string for key in the current language, with {name}
// parameters filled in. It falls back to English, then to the key.
export function t(key, params = {}) {
  const s = languages[current].dict[key] ?? en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

// plural picks key.one / key.other by the language's plural rules.
export function plural(key, n) {
  const form = new Intl.PluralRules(locale()).select(n);
  const k = `${key}.${form}`;
  return t(k in languages[current].dict || k in en ? k : `${key}.other`, { n });
}

// apply sets <html lang> and the static strings marked in the HTML with
// data-i18n (text), data-i18n-title and data-i18n-aria-label.
export function apply(root = document) {
  document.documentElement.lang = locale();
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  }
}
