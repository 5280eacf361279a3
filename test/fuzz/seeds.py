#!/usr/bin/python3
"""Write the fuzz harnesses' seed corpora (test/fuzz/corpus/HARNESS/) from the test models.

    /usr/bin/python3 test/fuzz/seeds.py MODELS_DIR [CORPUS_DIR]

MODELS_DIR is what test/models.py and test/tokenizers.py wrote (build/testmodels);
CORPUS_DIR defaults to test/fuzz/corpus.  The seeds are small (under 400 KB in all) and
committed; `make fuzz-seeds` rewrites them.  The directory harness's input is records
[kind u8][length u16 LE][bytes] (test/fuzz/fuzz.c): 0 config.json, 1 model.safetensors,
2 tokenizer.json, 3 the index, 4 + k shard k + 1.
"""
import argparse
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def record(kind, blob):
    assert len(blob) < 65536, len(blob)
    return struct.pack("<BH", kind, len(blob)) + blob


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(prog="seeds.py", description=__doc__.split("\n")[0])
    ap.add_argument("models", metavar="MODELS_DIR")
    ap.add_argument("corpus", metavar="CORPUS_DIR", nargs="?", default=os.path.join(HERE, "corpus"))
    a = ap.parse_args()
    md = a.models
    seeds = {"load_file": {}, "load_dir": {}, "tokenizer_json": {}, "tokenize": {}, "cli_options": {}}
    for name in ("models/serial_mqa_gelunew_glu_rope50_bias_f16.safetensors", "bad/metadata_int.safetensors",
                 "bad/missing_lm_head.safetensors", "bad/five_bytes.safetensors"):
        seeds["load_file"][os.path.basename(name)] = read(md, name)
    one = os.path.join(md, "models/parallel_mha_nok_nov_gelunew_glu_bf16")
    seeds["load_dir"]["dir_with_tokenizer"] = (record(0, read(one, "config.json")) +
                                               record(1, read(one, "model.safetensors")) +
                                               record(2, read(md, "tokenizers/bpe_plain.json")))
    sh = os.path.join(md, "models/sharded_parallel_mha_gelu_mlp_tied_bf16")
    index = json.loads(read(sh, "model.safetensors.index.json"))
    shards = sorted(set(index["weight_map"].values()))
    seeds["load_dir"]["sharded"] = (record(0, read(sh, "config.json")) +
                                    record(3, read(sh, "model.safetensors.index.json")) +
                                    b"".join(record(4 + i, read(sh, s)) for i, s in enumerate(shards)))
    seeds["tokenizer_json"]["bpe_plain.json"] = read(md, "tokenizers/bpe_plain.json")
    seeds["tokenizer_json"]["bpe_prefix.json"] = read(md, "tokenizers/bpe_prefix.json")
    for i, text in enumerate(["In the beginning God created the heaven and the earth.",
                              "don't stop \u00e9\u00e8 \U0001F600 <|endoftext|> 123 4567",
                              "\ttabs\nand\r\nnewlines  and   spaces", "\xff\xfe invalid".encode("latin-1").decode("latin-1")]):
        seeds["tokenize"][f"text{i}"] = text.encode("utf-8", "surrogatepass")
    seeds["tokenize"]["invalid_utf8"] = b"abc\xff\xc3(def"
    for i, argv in enumerate([["generate", "-c", "64", "--ctx=5", "-n", "10", "--tokens", "1,2,3"],
                              ["merge", "--max-shard-size", "5GB", "--max-shard-size=20KiB", "-t", "2"],
                              ["generate", "-s", "18446744073709551615", "--threads", "-1", "--tokens=,1"]]):
        seeds["cli_options"][f"argv{i}"] = b"\0".join(s.encode() for s in argv)
    for harness, files in seeds.items():
        d = os.path.join(a.corpus, harness)
        os.makedirs(d, exist_ok=True)
        for name, blob in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(blob)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
