"""Runs llama.cpp's OpenAI-compatible server (through the xllamacpp wheel) for one model
until it is stopped (SIGTERM or SIGINT).

    serve_llama.py --model FILE.gguf --port PORT [--host 127.0.0.1] [--threads N]
                   [--embedding] [--ctx N] [--alias NAME]

With --embedding the server answers POST /v1/embeddings with mean-pooled vectors
(normalised by llama.cpp); without, /v1/chat/completions. GET /v1/models and /health
are always there. Prints one line "listening http://HOST:PORT" to stdout once started.
Used by the embed crate's tests and `crm-bench embed` as the llama.cpp reference.
Run inside the venv made by scripts/setup-python.sh.
"""

import argparse
import os
import signal
import sys
import threading

import xllamacpp as xlc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--embedding", action="store_true")
    parser.add_argument("--ctx", type=int, default=0, help="context size; 0 = the model's")
    parser.add_argument("--batch", type=int, default=2048, help="logical and physical batch")
    parser.add_argument("--parallel", type=int, default=1, help="server slots")
    parser.add_argument("--alias", default=None, help="model name shown by /v1/models")
    args = parser.parse_args()

    if not os.path.isfile(args.model):
        sys.exit(f"model file {args.model} not found")

    params = xlc.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_parallel = args.parallel
    if args.ctx:
        params.n_ctx = args.ctx
    if args.embedding:
        params.embedding = True
        params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        # An embedding batch must hold whole inputs: logical = physical batch.
        params.n_batch = args.batch
        params.n_ubatch = args.batch
    if args.alias:
        # A set of names in xllamacpp; a plain string would be taken as one alias per
        # character.
        params.model_alias = {args.alias}
    params.warmup = True

    server = xlc.Server(params)
    print(f"listening http://{args.host}:{args.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server


if __name__ == "__main__":
    main()
