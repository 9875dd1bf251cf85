// GitHub's own OpenAPI descriptions (@octokit/openapi), turned into validators for the fake:
// every request Arno sends and every response the fake returns is checked against both the
// api.github.com and the Enterprise Server 3.17 description. OpenAPI 3.0 schemas are JSON
// Schema plus `nullable`; that one keyword is rewritten into JSON Schema here.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const here = path.dirname(fileURLToPath(import.meta.url));
const generated = path.join(here, "node_modules/@octokit/openapi/generated");

// `nullable: true` → JSON Schema's null type, wherever it sits.
function jsonSchema(node) {
  if (Array.isArray(node)) return node.map(jsonSchema);
  if (!node || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "nullable" || k === "example" || k === "examples") continue;
    if (k === "$ref" && typeof v === "string") out[k] = v.startsWith("#/") ? `gh${v}` : v;
    else if ((k === "properties" || k === "patternProperties") && v && typeof v === "object") {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, jsonSchema(s)]));
    } else out[k] = jsonSchema(v);
  }
  if (node.nullable === true) {
    if (typeof out.type === "string") {
      out.type = [out.type, "null"];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
      return out;
    }
    return { anyOf: [out, { type: "null" }] };
  }
  return out;
}

function pointer(doc, ref) {
  return ref
    .replace(/^#\//, "")
    .split("/")
    .reduce((at, part) => at?.[part.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
}

class Description {
  constructor(name) {
    this.name = name;
    this.doc = JSON.parse(fs.readFileSync(path.join(generated, `${name}.json`), "utf8"));
    this.ajv = new Ajv({ strict: false, allErrors: true, logger: false, validateFormats: true });
    addFormats(this.ajv);
    const schemas = Object.fromEntries(Object.entries(this.doc.components.schemas).map(([n, s]) => [n, jsonSchema(s)]));
    this.ajv.addSchema({ components: { schemas } }, "gh");
    this.cache = new Map();
  }
  deref(node) {
    while (node && node.$ref) node = pointer(this.doc, node.$ref);
    return node;
  }
  operation(template, method) {
    return this.doc.paths[template]?.[method.toLowerCase()];
  }
  compile(key, schema) {
    if (!this.cache.has(key)) this.cache.set(key, this.ajv.compile(jsonSchema(schema)));
    return this.cache.get(key);
  }
  // Problems with a request: unknown operation, bad parameters, a body GitHub would refuse.
  checkRequest(template, method, params, query, body) {
    const op = this.operation(template, method);
    if (!op) return [`${this.name}: no operation ${method} ${template}`];
    const problems = [];
    const declared = (op.parameters || []).map((p) => this.deref(p));
    for (const p of declared) {
      const value = p.in === "path" ? params[p.name] : p.in === "query" ? query[p.name] : undefined;
      if (p.in !== "path" && p.in !== "query") continue;
      if (value === undefined) {
        if (p.required) problems.push(`${this.name}: ${method} ${template}: missing ${p.in} parameter ${p.name}`);
        continue;
      }
      const schema = p.schema || {};
      const typed = schema.type === "integer" || schema.type === "number" ? Number(value) : schema.type === "boolean" ? value === "true" ? true : value === "false" ? false : value : value;
      const validate = this.compile(`${template} ${method} param ${p.name}`, schema);
      if (!validate(typed)) problems.push(`${this.name}: ${method} ${template}: ${p.name}=${value}: ${this.ajv.errorsText(validate.errors)}`);
    }
    for (const name of Object.keys(query)) {
      if (!declared.some((p) => p.in === "query" && p.name === name)) {
        problems.push(`${this.name}: ${method} ${template}: undeclared query parameter ${name}`);
      }
    }
    const requestBody = this.deref(op.requestBody);
    if (requestBody) {
      const schema = requestBody.content?.["application/json"]?.schema;
      if (body === undefined) {
        if (requestBody.required) problems.push(`${this.name}: ${method} ${template}: a body is required`);
      } else if (schema) {
        const validate = this.compile(`${template} ${method} body`, schema);
        if (!validate(body)) problems.push(`${this.name}: ${method} ${template} body: ${this.ajv.errorsText(validate.errors)}`);
      }
    } else if (body !== undefined && method !== "GET") {
      problems.push(`${this.name}: ${method} ${template} takes no body`);
    }
    return problems;
  }
  // Problems with a response the fake is about to send (only statuses the description declares
  // are checked: rate limits and the like may come from any endpoint, as on GitHub).
  checkResponse(template, method, status, body) {
    const op = this.operation(template, method);
    if (!op) return [];
    const response = this.deref(op.responses?.[String(status)]);
    if (!response) {
      return status < 400 ? [`${this.name}: ${method} ${template} never answers ${status}`] : [];
    }
    const schema = response.content?.["application/json"]?.schema;
    if (!schema) return body === undefined || body === "" ? [] : [];
    const validate = this.compile(`${template} ${method} ${status}`, schema);
    return validate(body) ? [] : [`${this.name}: ${method} ${template} ${status} response: ${this.ajv.errorsText(validate.errors)}`];
  }
  example(name) {
    return structuredClone(this.doc.components.examples[name].value);
  }
}

let descriptions;
export function all() {
  descriptions ??= [new Description("api.github.com"), new Description("ghes-3.17")];
  return descriptions;
}
