"""Milliseconds per rendered image: GQN.generate (the serving signature's work: representation,
L generator steps from the prior, observation) compiled as one tf.function, with the cores'
step-invariant gates computed plainly and factorised (benchmarks/compare.py).

    python benchmarks/generate.py --preset paper --batch_sizes 1,8 --context_size 5 \
        --representation tower,pool,pyramid --mixed_precision float32,mixed_bfloat16

For each representation, dtype policy and batch size, the plain and factorised models (same
weights) are traced once each, then called --rounds times in alternation. The last line printed
is JSON: {"results": [{representation, policy, variant, batch_size, ms_per_image, ms_per_call},
...], "ratios": {"<representation>/<policy>/B<b>": factorised / plain, ...}}.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

import compare  # noqa: E402  (benchmarks/compare.py, beside this script)
from gqn_tf import cli  # noqa: E402

flags.DEFINE_list("batch_sizes", ["1", "8"], "Images rendered per call, comma separated.")
flags.DEFINE_integer("rounds", 10, "Timed calls of each variant after its warm-up call.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    tf = cli.import_tensorflow()

    try:
        compare.check_flags()
        batch_sizes = [int(b) for b in FLAGS.batch_sizes]
        if min(batch_sizes) < 1:
            raise ValueError
    except ValueError as error:
        raise cli.UserError(str(error) if str(error) else
                            f"--batch_sizes {','.join(FLAGS.batch_sizes)}: use positive "
                            f"integers.") from None
    results = []
    for representation, policy, names in compare.configurations():
        models, config = compare.model_pair(representation, policy, names)
        for batch_size in batch_sizes:
            batch = compare.random_batch(batch_size, FLAGS.context_size, config.image_size)
            inputs = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
            calls = {}
            for name, model in models.items():
                render = tf.function(lambda *x, model=model: model.generate(*x, seed=0))
                calls[name] = lambda render=render: render(*inputs).numpy()
            timings = compare.alternate(calls, FLAGS.rounds,
                                        f"{representation} {policy} B={batch_size}")
            for name, (warmup, times) in timings.items():
                call_s = float(np.median(times))
                results.append({
                    "representation": representation, "policy": policy, "variant": name,
                    "batch_size": batch_size, "ms_per_call": round(1000 * call_s, 2),
                    "ms_per_image": round(1000 * call_s / batch_size, 2),
                    "warmup_s": round(warmup, 2)})
                print(f"{representation} {policy} B={batch_size} {name}: "
                      f"{1000 * call_s / batch_size:.1f} ms/image "
                      f"({1000 * call_s:.1f} ms per call)", flush=True)
        compare.release(models)
    ratios = {}
    for batch_size in batch_sizes:
        chosen = [r for r in results if r["batch_size"] == batch_size]
        ratios.update({f"{name}/B{batch_size}": value
                       for name, value in compare.ratios(chosen, "ms_per_image").items()})
    for name, value in ratios.items():
        print(f"ratio {name}: {value}")
    print(json.dumps({"results": results, "ratios": ratios, "preset": FLAGS.preset,
                      "context_size": FLAGS.context_size, "image_size": compare.image_size()}))


if __name__ == "__main__":
    cli.run(main)
