// A fake GitHub (github.com and Enterprise Server shapes) for Arno's tests: the REST endpoints
// Arno uses, GraphQL object lookups, and GitHub App authentication, over real bare git
// repositories. Every request it receives and every response it sends is checked against
// GitHub's own OpenAPI descriptions (api.github.com and ghes-3.17) and GraphQL schema; anything
// the real GitHub would refuse is answered as GitHub would and recorded as a violation, which
// the tests assert is empty.
//
// Environment: PORT (0 for any), ROOT (where repositories live), APP_ID, CLIENT_ID, APP_KEY (path
// of the App's private key PEM; its public half checks the JWTs). Prints "READY <base url>".
// Test control lives under /_fake (see the handlers at the end).
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import * as G from "./git.mjs";
import { all as descriptions } from "./openapi.mjs";
import { graphql } from "./graphql.mjs";

const ROOT = process.env.ROOT || fs.mkdtempSync("/tmp/github-fake-");
const APP_ID = process.env.APP_ID || "1";
const CLIENT_ID = process.env.CLIENT_ID || "Iv1.fake";
const PUBLIC_KEY = process.env.APP_KEY ? crypto.createPublicKey(fs.readFileSync(process.env.APP_KEY)) : null;
let base = "";

const state = {
  installations: new Map(), // id → { id, account, repos: Set, suspended }
  tokens: new Map(), // token → { installation, expires }
  repos: new Map(), // "owner/name" (lower case: GitHub's names are case-insensitive) → { id, owner, name, dir, installation }
  pulls: new Map(), // "owner/name" → [pull]
  faults: [], // { method, path (RegExp source), status, headers, body, times }
  log: [],
  violations: [],
  tokenLifetime: 3600,
  treeLimit: 100000,
  rate: new Map(), // installation → { remaining, reset }
  deliveries: [], // what GET /app/hook/deliveries lists
  hook: null, // { url, secret }: where the App's webhook deliveries go
  devices: new Map(), // device_code → { user_code, expires, interval, last_poll, approved: { login, id } | null, denied }
  userTokens: new Map(), // user access token → { login, id }
  collaborators: new Map(), // "owner/name" → [{ login, id, role }]
  deviceInterval: 1,
  checks: new Map(), // "owner/name" → { runs: [{ id, sha, name, status, conclusion, at }], statuses: [{ id, sha, context, state, at }] }
};

const DOCS = "https://docs.github.com/rest";
const now = () => Math.floor(Date.now() / 1000);
const iso = (secs) => new Date(secs * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

// --- HTTP plumbing ------------------------------------------------------------------------------

class Reply {
  constructor(status, body, headers = {}) {
    Object.assign(this, { status, body, headers });
  }
}
const reply = (status, body, headers) => new Reply(status, body, headers);
const error = (status, message, extra = {}) => reply(status, { message, documentation_url: DOCS, ...extra });
const notFound = () => error(404, "Not Found");

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res, r) {
  const headers = { ...r.headers };
  let payload = "";
  if (r.body !== undefined) {
    if (Buffer.isBuffer(r.body)) payload = r.body;
    else {
      payload = JSON.stringify(r.body);
      headers["content-type"] ??= "application/json; charset=utf-8";
    }
  }
  res.writeHead(r.status, headers);
  res.end(payload);
}

// --- routes ---------------------------------------------------------------------------------------

const routes = []; // { method, template, regex, names, auth, handler }
function route(method, template, auth, handler) {
  const names = [];
  const multi = new Set(["ref", "tree_sha", "basehead"]);
  const source = template.replace(/\{([^}]+)\}/g, (_, name) => {
    names.push(name);
    return multi.has(name) ? "(.+)" : "([^/]+)";
  });
  routes.push({ method, template, regex: new RegExp(`^${source}$`), names, auth, handler });
}

function match(method, pathname) {
  for (const r of routes) {
    if (r.method !== method) continue;
    const m = r.regex.exec(pathname);
    if (m) {
      const params = {};
      r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
      return { r, params };
    }
  }
  return null;
}

// --- authentication ------------------------------------------------------------------------------

function b64url(s) {
  return Buffer.from(s, "base64url");
}

function checkJwt(header) {
  const token = /^Bearer (.+)$/.exec(header || "")?.[1];
  if (!token || !PUBLIC_KEY) return "A JSON web token could not be decoded";
  const parts = token.split(".");
  if (parts.length !== 3) return "A JSON web token could not be decoded";
  let head, claims;
  try {
    head = JSON.parse(b64url(parts[0]));
    claims = JSON.parse(b64url(parts[1]));
  } catch {
    return "A JSON web token could not be decoded";
  }
  if (head.alg !== "RS256") return "A JSON web token could not be decoded";
  const ok = crypto.verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), PUBLIC_KEY, b64url(parts[2]));
  if (!ok) return "A JSON web token could not be decoded";
  if (String(claims.iss) !== APP_ID && claims.iss !== CLIENT_ID) return "'Issuer' claim ('iss') must be an Integer";
  const t = now();
  if (typeof claims.iat !== "number" || claims.iat > t + 60) return "'Issued at' claim ('iat') must be an Integer representing a time in the past";
  if (typeof claims.exp !== "number" || claims.exp <= t) return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
  if (claims.exp - claims.iat > 600) return "'Expiration time' claim ('exp') is too far in the future";
  return null;
}

function checkToken(header) {
  const token = /^(?:Bearer|token) (.+)$/.exec(header || "")?.[1];
  const t = token && state.tokens.get(token);
  if (!t || t.expires <= now()) return null;
  const inst = state.installations.get(t.installation);
  if (!inst || inst.removed) return null;
  return inst;
}

// --- representations -----------------------------------------------------------------------------

const [dotcom] = descriptions();
function owner(login) {
  const u = dotcom.example("simple-user");
  const id = [...login].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % 1e7;
  return Object.assign(u, {
    login,
    id,
    node_id: `U_${id}`,
    type: "Organization",
    url: `${base}/users/${login}`,
    html_url: `${base}/${login}`,
  });
}

function repository(repo, full) {
  const r = dotcom.example(full ? "full-repository" : "minimal-repository");
  const dir = repo.dir;
  Object.assign(r, {
    id: repo.id,
    node_id: `R_${repo.id}`,
    name: repo.name,
    full_name: `${repo.owner}/${repo.name}`,
    owner: owner(repo.owner),
    private: true,
    visibility: "private",
    url: `${base}/repos/${repo.owner}/${repo.name}`,
    html_url: `${base.replace(/\/api\/v3$/, "")}/${repo.owner}/${repo.name}`,
    default_branch: G.git(dir, ["symbolic-ref", "--short", "HEAD"]).trim(),
    has_discussions: false,
  });
  delete r.organization;
  delete r.parent;
  delete r.source;
  delete r.template_repository;
  if (!full) {
    Object.assign(r, { permissions: { admin: false, maintain: false, push: true, triage: true, pull: true } });
  }
  return r;
}

function installation(inst) {
  const i = dotcom.example("installation");
  return Object.assign(i, {
    id: inst.id,
    // GitHub's description inlines the account here as allOf [simple-user, enterprise] (both at
    // once), so the fake's account carries the enterprise fields too.
    account: { ...owner(inst.account), name: inst.account, slug: inst.account.toLowerCase(), created_at: iso(0), updated_at: iso(0) },
    repository_selection: "selected",
    access_tokens_url: `${base}/app/installations/${inst.id}/access_tokens`,
    repositories_url: `${base}/installation/repositories`,
    html_url: `${base}/organizations/${inst.account}/settings/installations/${inst.id}`,
    app_id: Number(APP_ID),
    target_id: owner(inst.account).id,
    target_type: "Organization",
    suspended_at: inst.suspended ? iso(now()) : null,
    permissions: { contents: "write", pull_requests: "write", metadata: "read", workflows: "write", checks: "read", statuses: "read" },
    events: ["push", "pull_request", "repository", "check_suite", "status"],
  });
}

function gitRef(repo, ref, sha) {
  return {
    ref,
    node_id: `REF_${Buffer.from(ref).toString("base64url")}`,
    url: `${base}/repos/${repo.owner}/${repo.name}/git/${ref}`,
    object: { type: "commit", sha, url: `${base}/repos/${repo.owner}/${repo.name}/git/commits/${sha}` },
  };
}

function gitCommit(repo, c) {
  const u = `${base}/repos/${repo.owner}/${repo.name}`;
  return {
    sha: c.sha,
    node_id: `C_${c.sha}`,
    url: `${u}/git/commits/${c.sha}`,
    html_url: `${u}/commit/${c.sha}`,
    author: c.author,
    committer: c.committer,
    message: c.message,
    tree: { sha: c.tree, url: `${u}/git/trees/${c.tree}` },
    parents: c.parents.map((p) => ({ sha: p, url: `${u}/git/commits/${p}`, html_url: `${u}/commit/${p}` })),
    verification: { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null },
  };
}

function commit(repo, c) {
  const r = dotcom.example("commit");
  const u = `${base}/repos/${repo.owner}/${repo.name}`;
  Object.assign(r, {
    sha: c.sha,
    node_id: `C_${c.sha}`,
    url: `${u}/commits/${c.sha}`,
    html_url: `${u}/commit/${c.sha}`,
    comments_url: `${u}/commits/${c.sha}/comments`,
    author: null,
    committer: null,
    parents: c.parents.map((p) => ({ sha: p, url: `${u}/commits/${p}`, html_url: `${u}/commit/${p}` })),
  });
  Object.assign(r.commit, {
    url: `${u}/git/commits/${c.sha}`,
    author: c.author,
    committer: c.committer,
    message: c.message,
    tree: { sha: c.tree, url: `${u}/git/trees/${c.tree}` },
    comment_count: 0,
  });
  delete r.files;
  delete r.stats;
  return r;
}

function treeEntry(repo, e) {
  const kind = e.type === "tree" ? "trees" : "blobs";
  return { ...e, url: `${base}/repos/${repo.owner}/${repo.name}/git/${kind}/${e.sha}` };
}

function pullRequest(repo, p) {
  const r = dotcom.example("pull-request");
  const u = `${base}/repos/${repo.owner}/${repo.name}`;
  const side = (ref) => ({
    label: `${repo.owner}:${ref}`,
    ref,
    sha: G.refSha(repo.dir, `refs/heads/${ref}`) || p.head_sha,
    user: owner(repo.owner),
    repo: repository(repo, true),
  });
  Object.assign(r, {
    id: p.id,
    node_id: `PR_${p.id}`,
    number: p.number,
    url: `${u}/pulls/${p.number}`,
    html_url: `${base.replace(/\/api\/v3$/, "")}/${repo.owner}/${repo.name}/pull/${p.number}`,
    state: p.state,
    title: p.title,
    body: p.body,
    draft: !!p.draft,
    merged: !!p.merged,
    merged_at: p.merged ? iso(p.merged) : null,
    merge_commit_sha: p.merge_commit_sha ?? null,
    closed_at: p.state === "closed" ? iso(p.updated) : null,
    created_at: iso(p.created),
    updated_at: iso(p.updated),
    head: side(p.head),
    base: side(p.base),
    requested_teams: [],
    requested_reviewers: [],
    assignees: [],
    assignee: null,
    labels: [],
    milestone: null,
    user: owner(repo.owner),
  });
  return r;
}

function pullSimple(repo, p) {
  const full = pullRequest(repo, p);
  for (const k of ["merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments", "review_comments", "maintainer_can_modify", "commits", "additions", "deletions", "changed_files"]) delete full[k];
  return full;
}

// --- REST handlers --------------------------------------------------------------------------------

function repoOf(params, inst) {
  const repo = state.repos.get(`${params.owner}/${params.repo}`.toLowerCase());
  if (!repo || !inst || repo.installation !== inst.id) return null;
  return repo;
}

const JWT = "jwt";
const TOKEN = "token";
const USER = "user"; // a user access token from the device flow

route("GET", "/app/installations", JWT, () => reply(200, [...state.installations.values()].filter((i) => !i.removed).map(installation)));

route("POST", "/app/installations/{installation_id}/access_tokens", JWT, ({ params }) => {
  const inst = state.installations.get(Number(params.installation_id));
  if (!inst || inst.removed) return notFound();
  if (inst.suspended) return error(403, "This installation has been suspended");
  const token = `ghs_${crypto.randomBytes(24).toString("base64url")}`;
  const expires = now() + state.tokenLifetime;
  state.tokens.set(token, { installation: inst.id, expires });
  return reply(201, {
    token,
    expires_at: iso(expires),
    permissions: { contents: "write", pull_requests: "write", metadata: "read" },
    repository_selection: "selected",
  });
});

route("GET", "/repos/{owner}/{repo}/installation", JWT, ({ params }) => {
  const repo = state.repos.get(`${params.owner}/${params.repo}`.toLowerCase());
  const inst = repo && state.installations.get(repo.installation);
  if (!inst || inst.removed) return notFound();
  return reply(200, installation(inst));
});

route("GET", "/app/hook/deliveries", JWT, () => reply(200, state.deliveries));

route("GET", "/installation/repositories", TOKEN, ({ inst, query }) => {
  const all = [...state.repos.values()].filter((r) => r.installation === inst.id);
  const perPage = Number(query.per_page || 30);
  const page = Number(query.page || 1);
  // This list's items are GitHub's full "repository" shape, which requires a few more fields.
  const items = all
    .slice((page - 1) * perPage, page * perPage)
    .map((r) => ({ ...repository(r, false), forks: 0, open_issues: 0, watchers: 0, license: null }));
  const headers = {};
  if (page * perPage < all.length) {
    headers.link = `<${base}/installation/repositories?per_page=${perPage}&page=${page + 1}>; rel="next"`;
  }
  return reply(200, { total_count: all.length, repositories: items, repository_selection: "selected" }, headers);
});

route("GET", "/repos/{owner}/{repo}", TOKEN, ({ repo }) => reply(200, repository(repo, true)));

const emptyRepo = () => error(409, "Git Repository is empty.");

route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", TOKEN, ({ repo, params }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  const full = `refs/${params.ref}`;
  const sha = G.git(repo.dir, ["rev-parse", "--verify", "-q", full], { allowFail: true })?.trim();
  if (!sha) return notFound();
  return reply(200, gitRef(repo, full, sha));
});

route("POST", "/repos/{owner}/{repo}/git/refs", TOKEN, ({ repo, body }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  if (!/^refs\/[^/]+\/.+/.test(body.ref)) return error(422, "Reference name must start with 'refs/' and have at least two slashes.");
  if (!G.isSha(body.sha) || G.objectType(repo.dir, body.sha) !== "commit") return error(422, "Object does not exist");
  if (!G.updateRef(repo.dir, body.ref, body.sha, null)) return error(422, "Reference already exists");
  return reply(201, gitRef(repo, body.ref, body.sha), { location: `${base}/repos/${repo.owner}/${repo.name}/git/${body.ref}` });
});

route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", TOKEN, ({ repo, params, body }) => {
  const full = `refs/${params.ref}`;
  const current = G.refSha(repo.dir, full);
  if (!current) return error(422, "Reference does not exist");
  if (!G.isSha(body.sha) || G.objectType(repo.dir, body.sha) !== "commit") return error(422, "Object does not exist");
  if (!body.force && !G.isAncestor(repo.dir, current, body.sha)) return error(422, "Update is not a fast forward");
  if (!G.updateRef(repo.dir, full, body.sha, current)) return error(422, "Reference cannot be updated");
  return reply(200, gitRef(repo, full, body.sha));
});

route("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", TOKEN, ({ repo, params }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  const c = G.isSha(params.commit_sha) && G.readCommit(repo.dir, params.commit_sha);
  return c ? reply(200, gitCommit(repo, c)) : notFound();
});

route("POST", "/repos/{owner}/{repo}/git/commits", TOKEN, ({ repo, body }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  if (G.objectType(repo.dir, body.tree) !== "tree") return error(422, "Tree SHA does not exist");
  for (const p of body.parents || []) if (G.objectType(repo.dir, p) !== "commit") return error(422, "Parent SHA does not exist or is not a commit object");
  const t = iso(now());
  const author = { date: t, ...(body.author || { name: "GitHub", email: "noreply@github.com" }) };
  const committer = { date: t, ...(body.committer || author) };
  const sha = G.writeCommit(repo.dir, { tree: body.tree, parents: body.parents || [], message: body.message, author, committer });
  return reply(201, gitCommit(repo, G.readCommit(repo.dir, sha)), { location: `${base}/repos/${repo.owner}/${repo.name}/git/commits/${sha}` });
});

route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", TOKEN, ({ repo, params, query }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  const tree = G.treeOf(repo.dir, params.tree_sha);
  if (!tree) return notFound();
  let entries = G.lsTree(repo.dir, tree, query.recursive !== undefined);
  const truncated = entries.length > state.treeLimit;
  if (truncated) entries = entries.slice(0, state.treeLimit);
  return reply(200, { sha: tree, url: `${base}/repos/${repo.owner}/${repo.name}/git/trees/${tree}`, tree: entries.map((e) => treeEntry(repo, e)), truncated });
});

route("POST", "/repos/{owner}/{repo}/git/trees", TOKEN, ({ repo, body }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  let files = [];
  if (body.base_tree) {
    const baseTree = G.treeOf(repo.dir, body.base_tree);
    if (!baseTree) return error(422, "Invalid tree info");
    files = G.lsTree(repo.dir, baseTree, true).filter((e) => e.type !== "tree");
  }
  const byPath = new Map(files.map((f) => [f.path, f]));
  for (const e of body.tree) {
    if (!e.path || e.path.startsWith("/") || e.path.endsWith("/") || e.path.split("/").some((p) => p === "" || p === "." || p === ".." || p === ".git")) {
      return error(422, `tree.path contains a malformed path component`);
    }
    if (e.sha !== undefined && e.content !== undefined) return error(422, "Must supply either tree.sha or tree.content. Request will fail if both are provided.");
    if (e.sha === null) {
      const under = [...byPath.keys()].filter((p) => p === e.path || p.startsWith(`${e.path}/`));
      if (!under.length) return error(422, `GitRPC::BadObjectState`);
      for (const p of under) byPath.delete(p);
      continue;
    }
    let sha = e.sha;
    if (e.content !== undefined) sha = G.writeBlob(repo.dir, Buffer.from(e.content, "utf8"));
    if (e.type === "tree") {
      // A whole folder replaced by an existing tree.
      for (const p of [...byPath.keys()]) if (p === e.path || p.startsWith(`${e.path}/`)) byPath.delete(p);
      for (const sub of G.lsTree(repo.dir, sha, true).filter((s) => s.type !== "tree")) byPath.set(`${e.path}/${sub.path}`, { ...sub, path: `${e.path}/${sub.path}` });
      continue;
    }
    if (G.objectType(repo.dir, sha) !== e.type) return error(422, `tree.sha ${sha} is not a valid ${e.type}`);
    for (const p of [...byPath.keys()]) if (p.startsWith(`${e.path}/`)) byPath.delete(p);
    byPath.set(e.path, { path: e.path, mode: e.mode, type: e.type, sha });
  }
  const sha = G.writeTreeFrom(repo.dir, [...byPath.values()]);
  const entries = G.lsTree(repo.dir, sha, false);
  return reply(201, { sha, url: `${base}/repos/${repo.owner}/${repo.name}/git/trees/${sha}`, tree: entries.map((e) => treeEntry(repo, e)), truncated: false }, {
    location: `${base}/repos/${repo.owner}/${repo.name}/git/trees/${sha}`,
  });
});

route("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}", TOKEN, ({ repo, params }) => {
  const bytes = G.isSha(params.file_sha) && G.blob(repo.dir, params.file_sha);
  if (!bytes) return notFound();
  const u = `${base}/repos/${repo.owner}/${repo.name}/git/blobs/${params.file_sha}`;
  return reply(200, { content: bytes.toString("base64"), encoding: "base64", url: u, sha: params.file_sha, size: bytes.length, node_id: `B_${params.file_sha}` });
});

route("POST", "/repos/{owner}/{repo}/git/blobs", TOKEN, ({ repo, body }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  if (body.encoding && !["utf-8", "base64"].includes(body.encoding)) return error(422, "encoding must be utf-8 or base64");
  const bytes = body.encoding === "base64" ? Buffer.from(body.content, "base64") : Buffer.from(body.content, "utf8");
  const sha = G.writeBlob(repo.dir, bytes);
  const u = `${base}/repos/${repo.owner}/${repo.name}/git/blobs/${sha}`;
  return reply(201, { url: u, sha }, { location: u });
});

route("GET", "/repos/{owner}/{repo}/commits", TOKEN, ({ repo, query }) => {
  if (G.isEmpty(repo.dir)) return emptyRepo();
  const start = query.sha || "HEAD";
  const args = ["log", `--max-count=${Number(query.per_page || 30)}`, "--format=%H", start];
  if (query.path) args.push("--", query.path);
  const out = G.git(repo.dir, args, { allowFail: true });
  if (out === null) return notFound();
  const ids = out.split("\n").filter(Boolean);
  return reply(200, ids.map((id) => commit(repo, G.readCommit(repo.dir, id))));
});

route("GET", "/repos/{owner}/{repo}/compare/{basehead}", TOKEN, ({ repo, params, query }) => {
  const m = /^(.+?)\.\.\.(.+)$/.exec(params.basehead);
  if (!m) return notFound();
  const [a, b] = [G.refSha(repo.dir, m[1]), G.refSha(repo.dir, m[2])];
  if (!a || !b) return notFound();
  const mb = G.mergeBase(repo.dir, a, b);
  if (!mb) return error(404, `No common ancestor between ${m[1]} and ${m[2]}.`);
  const count = (x, y) => Number(G.git(repo.dir, ["rev-list", "--count", `${x}..${y}`]).trim());
  const ahead = count(a, b);
  const behind = count(b, a);
  const r = dotcom.example("commit-comparison");
  const u = `${base}/repos/${repo.owner}/${repo.name}`;
  const perPage = Number(query.per_page || 250);
  const ids = G.git(repo.dir, ["rev-list", "--reverse", `${a}..${b}`]).split("\n").filter(Boolean).slice(0, perPage);
  Object.assign(r, {
    url: `${u}/compare/${params.basehead}`,
    html_url: `${u}/compare/${params.basehead}`,
    permalink_url: `${u}/compare/${params.basehead}`,
    diff_url: `${u}/compare/${params.basehead}.diff`,
    patch_url: `${u}/compare/${params.basehead}.patch`,
    base_commit: commit(repo, G.readCommit(repo.dir, a)),
    merge_base_commit: commit(repo, G.readCommit(repo.dir, mb)),
    status: ahead && behind ? "diverged" : ahead ? "ahead" : behind ? "behind" : "identical",
    ahead_by: ahead,
    behind_by: behind,
    total_commits: ahead,
    commits: ids.map((id) => commit(repo, G.readCommit(repo.dir, id))),
    files: [],
  });
  return reply(200, r);
});

route("POST", "/repos/{owner}/{repo}/merges", TOKEN, ({ repo, body }) => {
  const baseSha = G.refSha(repo.dir, `refs/heads/${body.base}`);
  const head = G.refSha(repo.dir, body.head) || (G.isSha(body.head) && G.objectType(repo.dir, body.head) === "commit" ? body.head : null);
  if (!baseSha) return error(404, "Base does not exist");
  if (!head) return error(404, "Head does not exist");
  if (G.isAncestor(repo.dir, head, baseSha)) return reply(204);
  const merged = G.mergeTree(repo.dir, baseSha, head);
  if (merged.conflicts) return error(409, "Merge conflict");
  const t = iso(now());
  const who = { name: "GitHub", email: "noreply@github.com", date: t };
  const message = body.commit_message || `Merge ${body.head} into ${body.base}`;
  const sha = G.writeCommit(repo.dir, { tree: merged.tree, parents: [baseSha, head], message, author: who, committer: who });
  if (!G.updateRef(repo.dir, `refs/heads/${body.base}`, sha, baseSha)) return error(409, "Merge conflict");
  return reply(201, commit(repo, G.readCommit(repo.dir, sha)));
});

route("GET", "/repos/{owner}/{repo}/pulls", TOKEN, ({ repo, query }) => {
  const list = (state.pulls.get(`${repo.owner}/${repo.name}`) || []).filter((p) => {
    if (query.state && query.state !== "all" && p.state !== query.state) return false;
    if (query.head && `${repo.owner}:${p.head}` !== query.head) return false;
    if (query.base && p.base !== query.base) return false;
    return true;
  });
  return reply(200, list.map((p) => pullSimple(repo, p)));
});

route("POST", "/repos/{owner}/{repo}/pulls", TOKEN, ({ repo, body }) => {
  const key = `${repo.owner}/${repo.name}`;
  const list = state.pulls.get(key) || [];
  const head = body.head.includes(":") ? body.head.split(":")[1] : body.head;
  const headSha = G.refSha(repo.dir, `refs/heads/${head}`);
  if (!headSha || !G.refSha(repo.dir, `refs/heads/${body.base}`)) {
    return error(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: headSha ? "base" : "head", code: "invalid" }] });
  }
  if (list.some((p) => p.state === "open" && p.head === head && p.base === body.base)) {
    return error(422, "Validation Failed", { errors: [{ resource: "PullRequest", code: "custom", message: `A pull request already exists for ${repo.owner}:${head}.` }] });
  }
  const t = now();
  const all = [...state.pulls.values()].flat();
  const p = { id: 1000 + all.length, number: list.length + 1, head, base: body.base, title: body.title, body: body.body ?? null, state: "open", draft: !!body.draft, created: t, updated: t, head_sha: headSha };
  list.push(p);
  state.pulls.set(key, list);
  return reply(201, pullRequest(repo, p), { location: `${base}/repos/${key}/pulls/${p.number}` });
});

function findPull(repo, number) {
  return (state.pulls.get(`${repo.owner}/${repo.name}`) || []).find((p) => p.number === Number(number));
}

route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", TOKEN, ({ repo, params }) => {
  const p = findPull(repo, params.pull_number);
  return p ? reply(200, pullRequest(repo, p)) : notFound();
});

route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", TOKEN, ({ repo, params, body }) => {
  const p = findPull(repo, params.pull_number);
  if (!p) return notFound();
  if (body.title !== undefined) p.title = body.title;
  if (body.body !== undefined) p.body = body.body;
  if (body.state !== undefined && !p.merged) p.state = body.state;
  p.updated = now();
  return reply(200, pullRequest(repo, p));
});

// Checks on a commit: check runs (GitHub Actions, other Apps) and commit statuses (older CI).
function checksOf(repo) {
  const key = `${repo.owner}/${repo.name}`;
  if (!state.checks.has(key)) state.checks.set(key, { runs: [], statuses: [] });
  return state.checks.get(key);
}

function checkRun(repo, run) {
  const r = dotcom.example("check-run");
  const repoUrl = `${base}/repos/${repo.owner}/${repo.name}`;
  return Object.assign(r, {
    id: run.id,
    node_id: `CR_${run.id}`,
    head_sha: run.sha,
    name: run.name,
    external_id: String(run.id),
    url: `${repoUrl}/check-runs/${run.id}`,
    html_url: `${base.replace(/\/api\/v3$/, "")}/${repo.owner}/${repo.name}/runs/${run.id}`,
    details_url: null,
    status: run.status,
    conclusion: run.status === "completed" ? run.conclusion : null,
    started_at: iso(run.at),
    completed_at: run.status === "completed" ? iso(run.at) : null,
    output: { title: null, summary: null, text: null, annotations_count: 0, annotations_url: `${repoUrl}/check-runs/${run.id}/annotations` },
    check_suite: { id: run.id },
    app: null,
    pull_requests: [],
  });
}

route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", TOKEN, ({ repo, params, query }) => {
  const runs = checksOf(repo).runs.filter((r) => r.sha === params.ref);
  const perPage = Number(query.per_page || 30);
  const page = Number(query.page || 1);
  const items = runs.slice((page - 1) * perPage, page * perPage);
  const headers = {};
  if (page * perPage < runs.length) {
    headers.link = `<${base}/repos/${repo.owner}/${repo.name}/commits/${params.ref}/check-runs?per_page=${perPage}&page=${page + 1}>; rel="next"`;
  }
  return reply(200, { total_count: runs.length, check_runs: items.map((r) => checkRun(repo, r)) }, headers);
});

route("GET", "/repos/{owner}/{repo}/commits/{ref}/status", TOKEN, ({ repo, params }) => {
  const repoUrl = `${base}/repos/${repo.owner}/${repo.name}`;
  // The latest status per context, as GitHub combines them.
  const latest = new Map();
  for (const st of checksOf(repo).statuses.filter((st) => st.sha === params.ref)) latest.set(st.context, st);
  const statuses = [...latest.values()].map((st) =>
    ({
      id: st.id,
      node_id: `SC_${st.id}`,
      state: st.state,
      context: st.context,
      description: null,
      target_url: null,
      avatar_url: null,
      url: `${repoUrl}/statuses/${params.ref}`,
      required: false,
      created_at: iso(st.at),
      updated_at: iso(st.at),
    }),
  );
  const states = statuses.map((st) => st.state);
  const combined = states.some((x) => x === "error" || x === "failure") ? "failure" : states.length && states.every((x) => x === "success") ? "success" : "pending";
  return reply(200, {
    state: combined,
    sha: params.ref,
    total_count: statuses.length,
    statuses,
    repository: repository(repo, false),
    commit_url: `${repoUrl}/commits/${params.ref}`,
    url: `${repoUrl}/commits/${params.ref}/status`,
  });
});

// The user behind a user access token, and a repository's collaborators.
route("GET", "/user", USER, ({ user }) => {
  const u = dotcom.example("private-user");
  return reply(200, Object.assign(u, {
    login: user.login,
    id: user.id,
    node_id: `U_${user.id}`,
    url: `${base}/users/${user.login}`,
    html_url: `${base.replace(/\/api\/v3$/, "")}/${user.login}`,
    type: "User",
    site_admin: false,
  }));
});

route("GET", "/repos/{owner}/{repo}/collaborators", TOKEN, ({ repo, query }) => {
  const all = state.collaborators.get(`${repo.owner}/${repo.name}`.toLowerCase()) || [];
  const perPage = Number(query.per_page || 30);
  const page = Number(query.page || 1);
  const items = all.slice((page - 1) * perPage, page * perPage);
  const headers = {};
  if (page * perPage < all.length) {
    headers.link = `<${base}/repos/${repo.owner}/${repo.name}/collaborators?affiliation=all&per_page=${perPage}&page=${page + 1}>; rel="next"`;
  }
  const base5 = { admin: 5, maintain: 4, write: 3, triage: 2, read: 1 };
  return reply(200, items.map((c) => {
    const level = base5[c.role] ?? 3; // a custom role carries write
    const u = owner(c.login);
    return {
      ...u,
      id: c.id,
      node_id: `U_${c.id}`,
      type: "User",
      permissions: { admin: level >= 5, maintain: level >= 4, push: level >= 3, triage: level >= 2, pull: true },
      role_name: c.role,
    };
  }), headers);
});

// --- GraphQL --------------------------------------------------------------------------------------

async function handleGraphql(req, raw, inst) {
  if (!inst) return error(401, "Bad credentials");
  let body;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch {
    return reply(400, { message: "Problems parsing JSON", documentation_url: DOCS });
  }
  const result = await graphql(body, {
    repository: (ownerLogin, name) => {
      const repo = state.repos.get(`${ownerLogin}/${name}`.toLowerCase());
      return repo && repo.installation === inst.id ? repo : null;
    },
  });
  if (result.violation) state.violations.push(`graphql: ${result.violation}`);
  return reply(200, result.response);
}

// --- the server -----------------------------------------------------------------------------------

function rateHeaders(inst) {
  const key = inst ? inst.id : "app";
  let r = state.rate.get(key);
  if (!r || r.reset <= now()) r = { remaining: 5000, reset: now() + 3600 };
  r.remaining = Math.max(0, r.remaining - 1);
  state.rate.set(key, r);
  return {
    "x-ratelimit-limit": "5000",
    "x-ratelimit-remaining": String(r.remaining),
    "x-ratelimit-reset": String(r.reset),
    "x-ratelimit-used": String(5000 - r.remaining),
    "x-ratelimit-resource": "core",
    "x-github-request-id": crypto.randomBytes(8).toString("hex").toUpperCase(),
  };
}

function fault(method, pathname) {
  const f = state.faults.find((f) => (!f.method || f.method === method) && new RegExp(f.path).test(pathname) && f.times > 0);
  if (!f) return null;
  f.times -= 1;
  return reply(f.status, f.body ?? { message: "fault", documentation_url: DOCS }, f.headers || {});
}

async function handleApi(req, res, url, pathname, raw) {
  const method = req.method;
  const entry = { method, path: pathname + url.search, status: 0, auth: "none" };
  state.log.push(entry);
  const done = (r) => {
    entry.status = r.status;
    send(res, r);
  };
  if (!req.headers["user-agent"]) {
    state.violations.push(`${method} ${pathname}: no User-Agent (GitHub refuses such requests)`);
    return done(error(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"));
  }
  if (req.headers["x-github-api-version"] !== "2022-11-28") {
    state.violations.push(`${method} ${pathname}: X-GitHub-Api-Version is ${req.headers["x-github-api-version"]}, not 2022-11-28`);
  }
  const inst = checkToken(req.headers.authorization);
  if (pathname === "/graphql") {
    entry.auth = inst ? "token" : "none";
    const f = fault(method, pathname);
    if (f) return done(f);
    return done(await handleGraphql(req, raw, inst));
  }
  const found = match(method, pathname);
  if (!found) {
    state.violations.push(`${method} ${pathname}: not an endpoint the fake serves`);
    return done(notFound());
  }
  const { r, params } = found;
  const query = Object.fromEntries(url.searchParams);
  let body;
  if (raw.length) {
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      state.violations.push(`${method} ${pathname}: a body that is not JSON`);
      return done(error(400, "Problems parsing JSON"));
    }
  }
  const problems = descriptions().flatMap((d) => d.checkRequest(r.template, method, params, query, body));
  if (problems.length) {
    state.violations.push(...problems);
    return done(error(422, "Validation Failed", { errors: problems.map((message) => ({ code: "invalid", message })) }));
  }
  let headers = {};
  let context = { params, query, body };
  if (r.auth === JWT) {
    entry.auth = "jwt";
    const problem = checkJwt(req.headers.authorization);
    if (problem) return done(error(401, problem));
  } else if (r.auth === USER) {
    entry.auth = "user";
    const token = /^Bearer (.+)$/.exec(req.headers.authorization || "")?.[1];
    const who = token && state.userTokens.get(token);
    if (!who) return done(error(401, "Bad credentials"));
    context.user = who;
  } else {
    entry.auth = "token";
    if (!inst) return done(error(401, "Bad credentials"));
    headers = rateHeaders(inst);
    context.inst = inst;
    if (params.owner) {
      const repo = repoOf(params, inst);
      if (!repo) return done(notFound());
      context.repo = repo;
    }
  }
  const f = fault(method, pathname);
  if (f) return done(reply(f.status, f.body, { ...headers, ...f.headers }));
  let result;
  try {
    result = r.handler(context);
  } catch (e) {
    state.violations.push(`${method} ${pathname}: the fake failed: ${e.stack}`);
    return done(error(500, "fake failed"));
  }
  const wrong = descriptions().flatMap((d) => d.checkResponse(r.template, method, result.status, result.body));
  if (wrong.length) {
    state.violations.push(...wrong);
    return done(error(500, "the fake's response does not match GitHub's description"));
  }
  return done(reply(result.status, result.body, { ...headers, ...result.headers }));
}

// --- Webhook deliveries ----------------------------------------------------------------------

// Deliver `payload` as GitHub does (JSON body, X-GitHub-Event, X-GitHub-Delivery and
// X-Hub-Signature-256 under the hook's secret) to the configured hook, and list it in
// /app/hook/deliveries. `offline`: GitHub tried but could not connect (nothing is sent).
async function deliver(event, payload, { guid = crypto.randomUUID(), offline = false, signature, ago = 0 } = {}) {
  const body = Buffer.from(JSON.stringify(payload));
  const started = Date.now();
  let status = 0;
  let text = "";
  if (!offline) {
    if (!state.hook) throw new Error("no hook configured (POST /_fake/hook first)");
    const sig = signature ?? `sha256=${crypto.createHmac("sha256", state.hook.secret).update(body).digest("hex")}`;
    const res = await fetch(state.hook.url, {
      method: "POST",
      body,
      headers: {
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/fake",
        "x-github-event": event,
        "x-github-delivery": guid,
        "x-github-hook-id": "1",
        "x-github-hook-installation-target-type": "integration",
        "x-github-hook-installation-target-id": APP_ID,
        "x-hub-signature-256": sig,
      },
    });
    status = res.status;
    text = await res.text();
  }
  state.deliveries.unshift({
    id: state.deliveries.length + 1,
    guid,
    delivered_at: iso(now() - ago),
    redelivery: false,
    duration: (Date.now() - started) / 1000,
    status: offline ? "failed to connect" : status < 300 ? "OK" : `Invalid HTTP Response: ${status}`,
    status_code: offline ? 502 : status,
    event,
    action: payload.action ?? null,
    installation_id: payload.installation?.id ?? null,
    repository_id: payload.repository?.id ?? null,
    throttled_at: null,
  });
  return { status, body: text, guid };
}

function hookRepository(repo) {
  return {
    id: repo.id,
    node_id: `R_${repo.id}`,
    name: repo.name,
    full_name: `${repo.owner}/${repo.name}`,
    private: true,
    owner: { login: repo.owner, id: 1, type: "Organization" },
    default_branch: G.git(repo.dir, ["symbolic-ref", "--short", "HEAD"]).trim(),
  };
}

// The push event of `ref` moving from `before` to its head now, built from the repository:
// commits listed oldest first, at most 20 (as GitHub caps them), head_commit the newest.
function pushPayload(repo, ref, before) {
  const after = G.refSha(repo.dir, ref) || "0".repeat(40);
  const range = /^0+$/.test(before) ? [after] : [`${before}..${after}`];
  const log = /^0+$/.test(after)
    ? ""
    : G.git(repo.dir, ["log", "--reverse", "--format=%H%x00%s%x00%an%x00%ae%x00%cI", ...range]);
  const commits = log
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [id, message, name, email, timestamp] = line.split("\0");
      return { id, tree_id: G.treeOf(repo.dir, id), distinct: true, message, timestamp, author: { name, email }, committer: { name, email }, added: [], removed: [], modified: [] };
    });
  return {
    ref,
    before,
    after,
    created: /^0+$/.test(before),
    deleted: /^0+$/.test(after),
    forced: false,
    compare: `${base}/repos/${repo.owner}/${repo.name}/compare/${before.slice(0, 12)}...${after.slice(0, 12)}`,
    commits: commits.slice(-20),
    head_commit: commits.at(-1) ?? null,
    repository: hookRepository(repo),
    pusher: { name: "octo", email: "octo@example.com" },
    sender: { login: "octo", id: 2, type: "User" },
    installation: { id: repo.installation, node_id: `I_${repo.installation}` },
  };
}

// The device flow on the web host (GitHub: "Generating a user access token for a GitHub App").
// GitHub answers these with 200 and an "error" field; with Accept: application/json, in JSON.
function deviceFlow(pathname, req, raw) {
  const form = Object.fromEntries(new URLSearchParams(raw.toString("utf8")));
  if (req.headers.accept !== "application/json") state.violations.push(`${pathname}: Accept is not application/json`);
  if (req.headers["content-type"] !== "application/x-www-form-urlencoded") state.violations.push(`${pathname}: not a form`);
  if (form.client_id !== CLIENT_ID) return reply(200, { error: "incorrect_client_credentials", error_description: "The client_id is not valid." });
  if (pathname === "/login/device/code") {
    const device_code = crypto.randomBytes(20).toString("hex");
    const user_code = `${crypto.randomBytes(2).toString("hex").toUpperCase()}-${crypto.randomBytes(2).toString("hex").toUpperCase()}`;
    state.devices.set(device_code, { user_code, expires: now() + 900, interval: state.deviceInterval, last_poll: 0, approved: null, denied: false });
    return reply(200, { device_code, user_code, verification_uri: `${base.replace(/\/api\/v3$/, "")}/login/device`, expires_in: 900, interval: state.deviceInterval });
  }
  if (form.grant_type !== "urn:ietf:params:oauth:grant-type:device_code") return reply(200, { error: "unsupported_grant_type" });
  const d = state.devices.get(form.device_code);
  if (!d) return reply(200, { error: "incorrect_device_code" });
  if (d.expires <= now()) return reply(200, { error: "expired_token" });
  const t = Date.now() / 1000;
  if (t - d.last_poll < d.interval) {
    d.interval += 5;
    state.violations.push(`device flow polled sooner than its interval`);
    return reply(200, { error: "slow_down", interval: d.interval });
  }
  d.last_poll = t;
  if (d.denied) return reply(200, { error: "access_denied" });
  if (!d.approved) return reply(200, { error: "authorization_pending" });
  state.devices.delete(form.device_code); // a device code is good for one token
  const access_token = `ghu_${crypto.randomBytes(18).toString("base64url")}`;
  state.userTokens.set(access_token, d.approved);
  return reply(200, { access_token, token_type: "bearer", scope: "" });
}

// Test control.
async function control(method, pathname, body) {
  if (method === "POST" && pathname === "/_fake/hook") {
    state.hook = { url: body.url, secret: body.secret };
    return reply(204);
  }
  if (method === "POST" && pathname === "/_fake/deliver") {
    return reply(200, await deliver(body.event, body.payload, body));
  }
  const rename = /^\/_fake\/repos\/([^/]+)\/([^/]+)\/rename$/.exec(pathname);
  if (rename && method === "POST") {
    // Renamed on GitHub: the repository answers to its new name only.
    const key = `${rename[1]}/${rename[2]}`.toLowerCase();
    const repo = state.repos.get(key);
    if (!repo) return notFound();
    state.repos.delete(key);
    const pulls = state.pulls.get(`${repo.owner}/${repo.name}`);
    repo.name = body.name;
    state.repos.set(`${repo.owner}/${repo.name}`.toLowerCase(), repo);
    if (pulls) state.pulls.set(`${repo.owner}/${repo.name}`, pulls);
    return reply(200, hookRepository(repo));
  }
  const pushEvent = /^\/_fake\/repos\/([^/]+)\/([^/]+)\/push-event$/.exec(pathname);
  if (pushEvent && method === "POST") {
    const repo = state.repos.get(`${pushEvent[1]}/${pushEvent[2]}`.toLowerCase());
    if (!repo) return notFound();
    const payload = pushPayload(repo, body.ref, body.before);
    return reply(200, { ...(await deliver("push", payload, body)), commits: payload.commits.length });
  }
  const checks = /^\/_fake\/repos\/([^/]+)\/([^/]+)\/(checks|statuses)$/.exec(pathname);
  if (checks && method === "POST") {
    // A check run reported ({ sha, name, status, conclusion }), or a commit status ({ sha, context, state }).
    const repo = state.repos.get(`${checks[1]}/${checks[2]}`.toLowerCase());
    if (!repo) return notFound();
    const c = checksOf(repo);
    const id = 5000 + c.runs.length + c.statuses.length;
    if (checks[3] === "checks") {
      const run = c.runs.find((r) => r.sha === body.sha && r.name === body.name);
      const next = { id: run?.id ?? id, sha: body.sha, name: body.name, status: body.status || "completed", conclusion: body.conclusion ?? null, at: now() };
      if (run) Object.assign(run, next);
      else c.runs.push(next);
    } else {
      c.statuses.push({ id, sha: body.sha, context: body.context, state: body.state, at: now() });
    }
    return reply(204);
  }
  if (method === "POST" && pathname === "/_fake/device") {
    // The user entered { user_code } on GitHub and approved as { login, id }, or { deny: true }.
    const d = [...state.devices.values()].find((x) => x.user_code === body.user_code);
    if (!d) return notFound();
    if (body.deny) d.denied = true;
    else d.approved = { login: body.login, id: body.id };
    return reply(204);
  }
  const collaborators = /^\/_fake\/repos\/([^/]+)\/([^/]+)\/collaborators$/.exec(pathname);
  if (collaborators && method === "PUT") {
    // The repository's collaborators: [{ login, id, role }].
    state.collaborators.set(`${collaborators[1]}/${collaborators[2]}`.toLowerCase(), body);
    return reply(204);
  }
  if (method === "POST" && pathname === "/_fake/repos") {
    const { owner: o, name, default_branch = "main", installation: instId = 1 } = body;
    const dir = path.join(ROOT, o, `${name}.git`);
    G.init(dir, default_branch);
    if (!state.installations.has(instId)) state.installations.set(instId, { id: instId, account: o, suspended: false, removed: false });
    const id = 100000 + state.repos.size;
    state.repos.set(`${o}/${name}`.toLowerCase(), { id, owner: o, name, dir, installation: instId });
    return reply(201, { dir, id });
  }
  if (method === "POST" && pathname === "/_fake/faults") {
    state.faults.push({ times: 1, ...body });
    return reply(204);
  }
  if (method === "POST" && pathname === "/_fake/settings") {
    if (body.token_lifetime !== undefined) state.tokenLifetime = body.token_lifetime;
    if (body.tree_limit !== undefined) state.treeLimit = body.tree_limit;
    if (body.device_interval !== undefined) state.deviceInterval = body.device_interval;
    if (body.expire_tokens) for (const t of state.tokens.values()) t.expires = now() - 1;
    if (body.rate_remaining !== undefined) for (const r of state.rate.values()) r.remaining = body.rate_remaining;
    return reply(204);
  }
  const inst = /^\/_fake\/installations\/(\d+)$/.exec(pathname);
  if (inst && method === "PATCH") {
    const i = state.installations.get(Number(inst[1]));
    if (!i) return notFound();
    Object.assign(i, body);
    return reply(200, i);
  }
  const pull = /^\/_fake\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)\/merge$/.exec(pathname);
  if (pull && method === "POST") {
    const repo = state.repos.get(`${pull[1]}/${pull[2]}`.toLowerCase());
    const p = repo && findPull(repo, pull[3]);
    if (!p) return notFound();
    const baseSha = G.refSha(repo.dir, `refs/heads/${p.base}`);
    const headSha = G.refSha(repo.dir, `refs/heads/${p.head}`);
    const merged = G.mergeTree(repo.dir, baseSha, headSha);
    if (merged.conflicts) return error(409, "conflict");
    const who = { name: "Octo Reviewer", email: "reviewer@example.com" };
    const sha = G.writeCommit(repo.dir, { tree: merged.tree, parents: [baseSha, headSha], message: `Merge pull request #${p.number}`, author: who, committer: who });
    G.updateRef(repo.dir, `refs/heads/${p.base}`, sha, baseSha);
    Object.assign(p, { state: "closed", merged: now(), merge_commit_sha: sha, updated: now() });
    if (state.hook && !body.quiet) {
      // As GitHub: the pull request is closed (merged), and the base branch was pushed.
      const pr = pullRequest(repo, p);
      const installation = { id: repo.installation, node_id: `I_${repo.installation}` };
      const sender = { login: "octo-reviewer", id: 3, type: "User" };
      await deliver("pull_request", { action: "closed", number: p.number, pull_request: pr, repository: hookRepository(repo), installation, sender });
      await deliver("push", pushPayload(repo, `refs/heads/${p.base}`, baseSha));
    }
    return reply(200, { sha });
  }
  if (method === "GET" && pathname === "/_fake/log") return reply(200, state.log);
  if (method === "POST" && pathname === "/_fake/log/clear") {
    state.log = [];
    return reply(204);
  }
  if (method === "GET" && pathname === "/_fake/violations") return reply(200, state.violations);
  if (method === "GET" && pathname === "/_fake/pulls") return reply(200, Object.fromEntries(state.pulls));
  return notFound();
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, "http://fake");
    const raw = await readBody(req);
    let pathname = url.pathname;
    if (pathname.startsWith("/_fake/")) {
      return send(res, await control(req.method, pathname, raw.length ? JSON.parse(raw) : {}));
    }
    if (req.method === "POST" && (pathname === "/login/device/code" || pathname === "/login/oauth/access_token")) {
      return send(res, deviceFlow(pathname, req, raw));
    }
    if (pathname === "/api/graphql") pathname = "/graphql";
    else if (pathname.startsWith("/api/v3/")) pathname = pathname.slice("/api/v3".length);
    else {
      state.violations.push(`${req.method} ${pathname}: outside /api/v3 and /api/graphql (Enterprise Server paths)`);
      return send(res, notFound());
    }
    await handleApi(req, res, url, pathname, raw);
  } catch (e) {
    state.violations.push(`fake crashed: ${e.stack}`);
    send(res, error(500, "fake crashed"));
  }
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  const origin = `http://127.0.0.1:${server.address().port}`;
  base = `${origin}/api/v3`;
  descriptions();
  console.log(`READY ${origin}`);
});
