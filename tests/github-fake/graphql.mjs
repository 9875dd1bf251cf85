// GitHub's GraphQL API as far as Arno uses it (blobs by id, the rate limit), over the real
// repositories: queries are parsed and validated against GitHub's own published schema
// (@octokit/graphql-schema) by graphql-js, so a query GitHub would refuse is refused here too.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildClientSchema, graphql as run, GraphQLError } from "graphql";
import * as G from "./git.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
let schema;
const TRUNCATE = Number(process.env.GRAPHQL_TEXT_LIMIT || 512 * 1024);
const state = { remaining: 5000, resetAt: new Date(Date.now() + 3600e3).toISOString().replace(/\.\d{3}Z$/, "Z") };

export async function graphql(body, { repository }) {
  // The introspection result (schema.json): the published SDL defines two fields twice.
  schema ??= buildClientSchema(JSON.parse(fs.readFileSync(path.join(here, "node_modules/@octokit/graphql-schema/schema.json"), "utf8")));
  let violation = null;
  const fieldResolver = (source, args, _ctx, info) => {
    const field = `${info.parentType.name}.${info.fieldName}`;
    switch (field) {
      case "Query.repository": {
        const repo = repository(args.owner, args.name);
        if (!repo) throw new GraphQLError(`Could not resolve to a Repository with the name '${args.owner}/${args.name}'.`);
        return { repo };
      }
      case "Query.rateLimit":
        state.remaining -= 1;
        return { cost: 1, limit: 5000, remaining: state.remaining, used: 5000 - state.remaining, resetAt: state.resetAt, nodeCount: 0 };
      case "Repository.object": {
        const id = args.oid ?? args.expression;
        if (!G.isSha(id)) return null;
        const bytes = source.repo.cache?.get(id) ?? G.blob(source.repo.dir, id);
        return bytes ? { __typename: "Blob", oid: id, bytes } : null;
      }
      case "Blob.oid":
        return source.oid;
      case "Blob.byteSize":
        return source.bytes.length;
      case "Blob.isBinary":
        return source.bytes.subarray(0, 8000).includes(0);
      case "Blob.isTruncated":
        return source.bytes.length > TRUNCATE;
      case "Blob.text":
        if (source.bytes.subarray(0, 8000).includes(0)) return null;
        return source.bytes.subarray(0, TRUNCATE).toString("utf8");
      default:
        if (info.parentType.name === "RateLimit") return source[info.fieldName];
        violation ??= `the fake does not serve ${field}`;
        return null;
    }
  };
  // Prefetch every blob the query names in one git process (as GitHub's backend batches them).
  const ids = [...String(body.query || "").matchAll(/object\(\s*oid:\s*"([0-9a-f]{40})"/g)].map((m) => m[1]);
  const owner = body.variables?.owner;
  const name = body.variables?.name;
  const repo = owner && name ? repository(owner, name) : null;
  if (repo && ids.length) repo.cache = G.blobs(repo.dir, ids);
  const result = await run({ schema, source: String(body.query || ""), variableValues: body.variables, fieldResolver });
  if (repo) delete repo.cache;
  if (result.errors?.some((e) => !e.path)) violation ??= `a query GitHub would refuse: ${result.errors.map((e) => e.message).join("; ")}`;
  return { response: JSON.parse(JSON.stringify(result)), violation };
}
