"""TF-slim's resnet_v2 and FaceNet's inception_resnet_v1 computed in TensorFlow with plain TF
ops (tf-slim's layers do not import with the TensorFlow this project tests with), its variables
named and shaped as slim's, then saved as a real checkpoint with tf.compat.v1.train.Saver:

    python tests/tf_reference.py resnet_v2_50 OUTDIR [--size 224] [--seed 0]

writes OUTDIR/model.ckpt.{index,data-00000-of-00001}, OUTDIR/x.npy (the input, N×C×H×W) and
OUTDIR/ref.npy (the logits, or FaceNet's 128-d bottleneck before its L2 normalization). It
runs in its own process so that TensorFlow and torch never share one. The structure follows slim's resnet_v2.py and resnet_utils.py: a root conv2d_same
7×7/2 with biases and no activation, a SAME 3×3/2 max pool, bottleneck_v2 units (preact
batch_norm + ReLU; shortcut a 1×1 conv with biases on the preactivation where the depth
changes, else the input subsampled by a 1×1 max pool; conv1 1×1, conv2 conv2d_same 3×3 with
the unit's stride, both with batch_norm + ReLU; conv3 1×1 with biases), the stride on each
block's last unit, postnorm, the spatial mean and a 1×1 logits conv with biases. batch_norm
has gamma (scale=True) and eps 1e-5, as resnet_arg_scope sets them."""
import argparse
import contextlib
import os
import sys

import numpy as np

BLOCKS = {"resnet_v2_50": [3, 4, 6, 3], "resnet_v2_101": [3, 4, 23, 3],
          "resnet_v2_152": [3, 8, 36, 3], "resnet_v2_200": [3, 24, 36, 3]}
EPS = 1e-5


class Builder:
    """Variables named by a scope stack of our own (slim's names exactly), created on first use
    and reused after: the same builder runs in graph mode (Saver checkpoints) and, called once
    eagerly to create them, inside a tf.function (benchmarks/seed.py)."""

    def __init__(self, tf, rng, eps=EPS, gamma=True):
        self.tf, self.rng, self.eps, self.gamma = tf, rng, eps, gamma
        self.vars, self.stack = {}, []

    @contextlib.contextmanager
    def scope(self, name):
        self.stack.append(name)
        try:
            yield
        finally:
            self.stack.pop()

    def var(self, name, value):
        full = "/".join(self.stack + [name])
        if full not in self.vars:
            self.vars[full] = self.tf.Variable(value.astype(np.float32), name=full)
        return self.vars[full]

    def batch_norm(self, x, scope, relu=True):
        tf, rng = self.tf, self.rng
        c = x.shape[-1]
        with self.scope(scope):
            beta = self.var("beta", rng.standard_normal(c) * 0.1)
            gamma = self.var("gamma", 1 + rng.standard_normal(c) * 0.1) if self.gamma else None
            mean = self.var("moving_mean", rng.standard_normal(c) * 0.1)
            var = self.var("moving_variance", rng.uniform(0.5, 1.5, c))
        y = tf.nn.batch_normalization(x, mean, var, beta, gamma, self.eps)
        return tf.nn.relu(y) if relu else y

    def conv(self, x, depth, k, stride, scope, norm=True, padding="SAME", gain=2.0,
             relu=True):
        """slim.conv2d: with batch_norm (+ ReLU) and no biases, or plain with biases.
        He-scaled weights (`gain`/fan-in variance); `k` a size or (height, width)."""
        tf = self.tf
        cin = int(x.shape[-1])
        kh, kw = (k, k) if isinstance(k, int) else k
        with self.scope(scope):
            w = self.var("weights", self.rng.standard_normal((kh, kw, cin, depth))
                         * np.sqrt(gain / (kh * kw * cin)))
            y = tf.nn.conv2d(x, w, [1, stride, stride, 1], padding)
            if not norm:
                return y + self.var("biases", self.rng.standard_normal(depth) * 0.1)
        return self.batch_norm(y, f"{scope}/BatchNorm", relu)

    def conv_same(self, x, depth, k, stride, scope, norm=True):
        """resnet_utils.conv2d_same: SAME for stride 1, else explicit symmetric pad + VALID."""
        if stride == 1:
            return self.conv(x, depth, k, 1, scope, norm)
        total = k - 1
        beg = total // 2
        x = self.tf.pad(x, [[0, 0], [beg, total - beg], [beg, total - beg], [0, 0]])
        return self.conv(x, depth, k, stride, scope, norm, padding="VALID")

    def bottleneck(self, x, depth, bottleneck, stride, scope):
        tf = self.tf
        with self.scope(scope):
            preact = self.batch_norm(x, "preact")
            if depth == int(x.shape[-1]):
                shortcut = x if stride == 1 else tf.nn.max_pool2d(x, 1, stride, "VALID")
            else:
                shortcut = self.conv(preact, depth, 1, stride, "shortcut", norm=False)
            r = self.conv(preact, bottleneck, 1, 1, "conv1")
            r = self.conv_same(r, bottleneck, 3, stride, "conv2")
            # small residuals, as training leaves them: the sum stays of order 1 down the net
            r = self.conv(r, depth, 1, 1, "conv3", norm=False, gain=0.05)
        return shortcut + r

    def resnet_v2(self, x, name, classes=1000):
        tf = self.tf
        with self.scope(name):
            x = self.conv_same(x, 64, 7, 2, "conv1", norm=False)
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
            for b, units in enumerate(BLOCKS[name]):
                base = 64 * 2 ** b
                for u in range(units):
                    stride = 2 if u == units - 1 and b < 3 else 1
                    x = self.bottleneck(x, base * 4, base, stride,
                                        f"block{b + 1}/unit_{u + 1}/bottleneck_v2")
            x = self.batch_norm(x, "postnorm")
            x = tf.reduce_mean(x, [1, 2], keepdims=True)
            x = self.conv(x, classes, 1, 1, "logits", norm=False, gain=1.0)
        return tf.squeeze(x, [1, 2])


class FaceNet(Builder):
    """FaceNet's inception_resnet_v1 (davidsandberg/facenet, src/models/inception_resnet_v1.py):
    batch_norm without gamma and eps 0.001 after every conv2d and the 128-d bottleneck; SAME
    convolutions unless a layer says VALID; scaled residual sums."""

    def __init__(self, tf, rng):
        super().__init__(tf, rng, eps=0.001, gamma=False)

    def branches(self, x, towers):
        """Each tower a list of (depth, kernel, stride, padding, scope) convolutions, or
        "pool" (a VALID 3×3/2 max pool), under Branch_{i}; the towers concatenated."""
        tf, outs = self.tf, []
        for i, tower in enumerate(towers):
            with self.scope(f"Branch_{i}"):
                y = x
                if tower == "pool":
                    y = tf.nn.max_pool2d(y, 3, 2, "VALID")
                for depth, k, stride, padding, scope in ([] if tower == "pool" else tower):
                    y = self.conv(y, depth, k, stride, scope, padding=padding)
            outs.append(y)
        return tf.concat(outs, 3)

    def block(self, x, scope, scale, towers, relu=True):
        tf = self.tf
        with self.scope(scope):
            mixed = self.branches(x, towers)
            up = self.conv(mixed, int(x.shape[-1]), 1, 1, "Conv2d_1x1", norm=False, gain=0.5)
        y = x + scale * up
        return tf.nn.relu(y) if relu else y

    def inception_resnet_v1(self, x):
        tf, S, V = self.tf, "SAME", "VALID"
        b35 = [[(32, 1, 1, S, "Conv2d_1x1")],
               [(32, 1, 1, S, "Conv2d_0a_1x1"), (32, 3, 1, S, "Conv2d_0b_3x3")],
               [(32, 1, 1, S, "Conv2d_0a_1x1"), (32, 3, 1, S, "Conv2d_0b_3x3"),
                (32, 3, 1, S, "Conv2d_0c_3x3")]]
        b17 = [[(128, 1, 1, S, "Conv2d_1x1")],
               [(128, 1, 1, S, "Conv2d_0a_1x1"), (128, (1, 7), 1, S, "Conv2d_0b_1x7"),
                (128, (7, 1), 1, S, "Conv2d_0c_7x1")]]
        b8 = [[(192, 1, 1, S, "Conv2d_1x1")],
              [(192, 1, 1, S, "Conv2d_0a_1x1"), (192, (1, 3), 1, S, "Conv2d_0b_1x3"),
               (192, (3, 1), 1, S, "Conv2d_0c_3x1")]]
        with self.scope("InceptionResnetV1"):
            x = self.conv(x, 32, 3, 2, "Conv2d_1a_3x3", padding=V)
            x = self.conv(x, 32, 3, 1, "Conv2d_2a_3x3", padding=V)
            x = self.conv(x, 64, 3, 1, "Conv2d_2b_3x3")
            x = tf.nn.max_pool2d(x, 3, 2, V)
            x = self.conv(x, 80, 1, 1, "Conv2d_3b_1x1", padding=V)
            x = self.conv(x, 192, 3, 1, "Conv2d_4a_3x3", padding=V)
            x = self.conv(x, 256, 3, 2, "Conv2d_4b_3x3", padding=V)
            for i in range(5):
                x = self.block(x, f"Repeat/block35_{i + 1}", 0.17, b35)
            with self.scope("Mixed_6a"):
                x = self.branches(x, [[(384, 3, 2, V, "Conv2d_1a_3x3")],
                                      [(192, 1, 1, S, "Conv2d_0a_1x1"),
                                       (192, 3, 1, S, "Conv2d_0b_3x3"),
                                       (256, 3, 2, V, "Conv2d_1a_3x3")], "pool"])
            for i in range(10):
                x = self.block(x, f"Repeat_1/block17_{i + 1}", 0.10, b17)
            with self.scope("Mixed_7a"):
                x = self.branches(x, [[(256, 1, 1, S, "Conv2d_0a_1x1"),
                                       (384, 3, 2, V, "Conv2d_1a_3x3")],
                                      [(256, 1, 1, S, "Conv2d_0a_1x1"),
                                       (256, 3, 2, V, "Conv2d_1a_3x3")],
                                      [(256, 1, 1, S, "Conv2d_0a_1x1"),
                                       (256, 3, 1, S, "Conv2d_0b_3x3"),
                                       (256, 3, 2, V, "Conv2d_1a_3x3")], "pool"])
            for i in range(5):
                x = self.block(x, f"Repeat_2/block8_{i + 1}", 0.20, b8)
            x = self.block(x, "Block8", 1.0, b8, relu=False)
            x = tf.reduce_mean(x, [1, 2])  # Logits/AvgPool_1a_8x8 (VALID, the whole map)
            with self.scope("Bottleneck"):
                cin = int(x.shape[-1])
                w = self.var("weights", self.rng.standard_normal((cin, 128)) / np.sqrt(cin))
            return self.batch_norm(tf.matmul(x, w), "Bottleneck/BatchNorm", relu=False)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=sorted(BLOCKS) + ["inception_resnet_v1"])
    p.add_argument("out")
    p.add_argument("--size", type=int, default=None, help="224 (resnet_v2), 160 (FaceNet)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    rng = np.random.default_rng(args.seed)
    facenet = args.model == "inception_resnet_v1"
    size = args.size or (160 if facenet else 224)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        inp = tf.compat.v1.placeholder(tf.float32, (None, size, size, 3))
        builder = FaceNet(tf, rng) if facenet else Builder(tf, rng)
        out = builder.inception_resnet_v1(inp) if facenet else builder.resnet_v2(inp, args.model)
        saver = tf.compat.v1.train.Saver(builder.vars)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            ref = sess.run(out, {inp: x.transpose(0, 2, 3, 1)})
            saver.save(sess, os.path.join(args.out, "model.ckpt"), write_meta_graph=False)
    np.save(os.path.join(args.out, "x.npy"), x)
    np.save(os.path.join(args.out, "ref.npy"), ref)


if __name__ == "__main__":
    sys.exit(main())
