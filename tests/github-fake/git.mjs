// Real git under the fake GitHub: bare repositories driven through git's own plumbing, so
// fast-forward rules, merges and trees behave exactly as git (and GitHub) make them behave.
import { execFileSync } from "node:child_process";

const ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0",
};

export class GitError extends Error {}

export function git(dir, args, { input, env, allowFail = false, raw = false } = {}) {
  try {
    const out = execFileSync("git", ["-C", dir, ...args], {
      input,
      env: { ...ENV, ...env },
      maxBuffer: 1 << 30,
      stdio: ["pipe", "pipe", "pipe"],
    });
    return raw ? out : out.toString("utf8");
  } catch (e) {
    if (allowFail) return null;
    throw new GitError(`git ${args[0]}: ${e.stderr?.toString() || e.message}`);
  }
}

export function init(dir, defaultBranch) {
  execFileSync("git", ["init", "--bare", "-q", "-b", defaultBranch, dir], { env: ENV });
  // Accept pushes of anything (as GitHub does), keep objects loose enough for plumbing.
  git(dir, ["config", "receive.denyCurrentBranch", "ignore"]);
}

export const isSha = (s) => typeof s === "string" && /^[0-9a-f]{40}$/.test(s);

export function refSha(dir, ref) {
  const out = git(dir, ["rev-parse", "--verify", "-q", `${ref}^{commit}`], { allowFail: true });
  return out ? out.trim() : null;
}

export function objectType(dir, sha) {
  const out = git(dir, ["cat-file", "-t", sha], { allowFail: true });
  return out ? out.trim() : null;
}

export function isEmpty(dir) {
  return !git(dir, ["for-each-ref", "--count=1", "refs/heads"]).trim();
}

function parsePerson(line) {
  const m = /^(.*) <(.*)> (\d+) ([+-]\d{4})$/.exec(line);
  if (!m) return { name: line, email: "", date: new Date(0).toISOString() };
  return { name: m[1], email: m[2], date: new Date(Number(m[3]) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z") };
}

export function readCommit(dir, sha) {
  if (objectType(dir, sha) !== "commit") return null;
  const text = git(dir, ["cat-file", "commit", sha]);
  const split = text.indexOf("\n\n");
  const headers = text.slice(0, split).split("\n");
  const commit = { sha, parents: [], message: text.slice(split + 2) };
  for (const line of headers) {
    const [key, ...rest] = line.split(" ");
    const value = rest.join(" ");
    if (key === "tree") commit.tree = value;
    else if (key === "parent") commit.parents.push(value);
    else if (key === "author") commit.author = parsePerson(value);
    else if (key === "committer") commit.committer = parsePerson(value);
  }
  return commit;
}

// A tree-ish (tree, commit, branch name) → tree id.
export function treeOf(dir, ish) {
  const out = git(dir, ["rev-parse", "--verify", "-q", `${ish}^{tree}`], { allowFail: true });
  return out ? out.trim() : null;
}

// Every entry under a tree, folders included, as GitHub's recursive listing has them.
export function lsTree(dir, tree, recursive) {
  const args = ["ls-tree", "-l", "-z", "--full-tree"];
  if (recursive) args.push("-r", "-t");
  args.push(tree);
  const out = git(dir, args);
  return out
    .split("\0")
    .filter(Boolean)
    .map((line) => {
      const tab = line.indexOf("\t");
      const [mode, type, sha, size] = line.slice(0, tab).split(/ +/);
      const entry = { path: line.slice(tab + 1), mode, type, sha };
      if (type === "blob") entry.size = Number(size);
      return entry;
    });
}

export function blob(dir, sha) {
  if (objectType(dir, sha) !== "blob") return null;
  return git(dir, ["cat-file", "blob", sha], { raw: true });
}

// Many blobs in one process: id → Buffer (or null).
export function blobs(dir, ids) {
  const result = new Map();
  if (!ids.length) return result;
  const out = git(dir, ["cat-file", "--batch"], { input: ids.join("\n") + "\n", raw: true });
  let at = 0;
  for (const id of ids) {
    const nl = out.indexOf(10, at);
    const header = out.subarray(at, nl).toString();
    at = nl + 1;
    const [, type, size] = header.split(" ");
    if (header.endsWith("missing") || type !== "blob") {
      if (!header.endsWith("missing")) at += Number(size) + 1;
      result.set(id, null);
      continue;
    }
    result.set(id, out.subarray(at, at + Number(size)));
    at += Number(size) + 1;
  }
  return result;
}

export function writeBlob(dir, bytes) {
  return git(dir, ["hash-object", "-w", "--stdin"], { input: bytes }).trim();
}

// A tree from a flat list of {path, mode, type, sha} entries (files only, nested by path).
export function writeTreeFrom(dir, files) {
  const root = { entries: new Map() };
  for (const f of files) {
    const parts = f.path.split("/");
    let node = root;
    for (const part of parts.slice(0, -1)) {
      let next = node.entries.get(part);
      if (!next || !next.entries) {
        next = { entries: new Map() };
        node.entries.set(part, next);
      }
      node = next;
    }
    node.entries.set(parts.at(-1), f);
  }
  const write = (node) => {
    const lines = [];
    for (const [name, child] of node.entries) {
      if (child.entries) {
        if (child.entries.size === 0) continue;
        lines.push(`040000 tree ${write(child)}\t${name}`);
      } else {
        lines.push(`${child.mode} ${child.type} ${child.sha}\t${name}`);
      }
    }
    return git(dir, ["mktree", "-z"], { input: lines.map((l) => l + "\0").join("") }).trim();
  };
  return write(root);
}

export function writeCommit(dir, { tree, parents, message, author, committer }) {
  const args = ["commit-tree", tree];
  for (const p of parents) args.push("-p", p);
  const when = (d) => (d ? `${Math.floor(new Date(d).getTime() / 1000)} +0000` : undefined);
  const env = {
    GIT_AUTHOR_NAME: author.name,
    GIT_AUTHOR_EMAIL: author.email,
    GIT_COMMITTER_NAME: committer.name,
    GIT_COMMITTER_EMAIL: committer.email,
  };
  if (author.date) env.GIT_AUTHOR_DATE = when(author.date);
  if (committer.date) env.GIT_COMMITTER_DATE = when(committer.date);
  return git(dir, args, { input: message, env }).trim();
}

export function isAncestor(dir, a, b) {
  return git(dir, ["merge-base", "--is-ancestor", a, b], { allowFail: true }) !== null;
}

export function mergeBase(dir, a, b) {
  const out = git(dir, ["merge-base", a, b], { allowFail: true });
  return out ? out.trim() : null;
}

// Compare-and-swap a branch (git's own check: refused if it no longer points at `old`).
export function updateRef(dir, ref, sha, old) {
  return git(dir, ["update-ref", ref, sha, old ?? "0".repeat(40)], { allowFail: true }) !== null;
}

// A three-way merge of two commits: { tree } or { conflicts: [paths] }.
export function mergeTree(dir, base, head) {
  try {
    const out = execFileSync("git", ["-C", dir, "merge-tree", "--write-tree", "-z", "--name-only", base, head], {
      env: ENV,
      stdio: ["pipe", "pipe", "pipe"],
    }).toString();
    return { tree: out.split("\0")[0] };
  } catch (e) {
    if (e.status === 1) {
      const parts = e.stdout.toString().split("\0");
      return { conflicts: parts.slice(1).filter((p) => p && !p.includes(" ")) };
    }
    throw new GitError(`git merge-tree: ${e.stderr}`);
  }
}

// The newest commit from `start` that changed `path`.
export function lastCommitFor(dir, start, path) {
  const args = ["log", "-1", "--format=%H", start];
  if (path) args.push("--", path);
  const out = git(dir, args, { allowFail: true });
  return out && out.trim() ? out.trim() : null;
}
