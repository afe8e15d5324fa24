// The backend's HTTPS API, same origin (Hosting rewrites /api/** to the `api` function). Every call
// carries the signed-in user's ID token; errors come back as ApiError with the API's field/reason.
import { currentToken } from "./session.js";

export const API_BASE = "/api";

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `HTTP_${status}`;
    this.field = err.field ?? null;
    this.reason = err.reason ?? null;
    this.errors = Array.isArray(err.errors) ? err.errors : [];
    this.requestId = err.request_id ?? null;
  }
}

async function headers(extra = {}) {
  const token = await currentToken();
  return { Authorization: `Bearer ${token}`, ...extra };
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: { message: text.slice(0, 300) } }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return { status: response.status, headers: response.headers, body };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function apiGet(path, params = {}) {
  return parse(await fetch(`${API_BASE}${path}${query(params)}`, { headers: await headers() }));
}

export async function apiPost(path, body, extraHeaders = {}) {
  return apiSend("POST", path, body, extraHeaders);
}

/** POST/PUT/PATCH with a JSON body (``null``: no body at all). */
export async function apiSend(method, path, body, extraHeaders = {}) {
  const init = { method, headers: await headers(body === null ? extraHeaders : { "Content-Type": "application/json", ...extraHeaders }) };
  if (body !== null) init.body = JSON.stringify(body);
  return parse(await fetch(`${API_BASE}${path}`, init));
}

/** POST a text body (e.g. a statement as ``text/csv``) with query parameters. */
export async function apiSendText(method, path, params, text, contentType) {
  const init = { method, headers: await headers({ "Content-Type": contentType }), body: text };
  return parse(await fetch(`${API_BASE}${path}${query(params)}`, init));
}

/** Streams a download (CSV/TXF exports), reporting bytes as they arrive, then saves it as a file. */
export async function download(path, params, filename, onProgress = () => {}) {
  const response = await fetch(`${API_BASE}${path}${query(params)}`, { headers: await headers() });
  if (!response.ok) await parse(response);
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onProgress(received);
  }
  const blob = new Blob(chunks, { type: response.headers.get("Content-Type") || "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return received;
}

/** The id the API derives for an Idempotency-Key (backend.api.idempotency.derived_id): lets the page
 *  listen to a group's document before the POST that creates it returns. */
export async function derivedId(prefix, tenantId, uid, key) {
  const data = new TextEncoder().encode(`${prefix}\x1f${tenantId}\x1f${uid}\x1f${key}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${prefix}-${hex.slice(0, 48)}`;
}

export function newKey(prefix) {
  return `${prefix}-${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
}
