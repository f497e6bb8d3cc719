"""The hand-written baseline: cached-feature transfer learning as a user would write it in
about 30 lines of Keras, without clf. image_dataset_from_directory, the frozen backbone
over every image once, a softmax head (dropout 0.5, Adam) trained on the features for
--epochs, the joined model saved. No cache between runs: every run extracts again.

benchmarks/transfer.py runs it in a fresh process beside ``clf run`` and prints the ratio.

    python benchmarks/cached_features_script.py DATA WEIGHTS [--image-size 224] [--alpha 0.35]
"""

import argparse
import json
import time

t0 = time.perf_counter()
p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("weights")
p.add_argument("--image-size", type=int, default=224)
p.add_argument("--alpha", type=float, default=0.35)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--output", default="model.keras")
args = p.parse_args()

import keras  # noqa: E402
import numpy as np  # noqa: E402

size = (args.image_size, args.image_size)
kw = dict(image_size=size, batch_size=32, shuffle=False, verbose=False)
train = keras.utils.image_dataset_from_directory(f"{args.data}/train", **kw)
val = keras.utils.image_dataset_from_directory(f"{args.data}/val", **kw)
base = keras.applications.MobileNetV2((*size, 3), alpha=args.alpha, include_top=False, weights=args.weights,
                                      pooling="avg")
preprocess = keras.layers.Rescaling(1 / 127.5, offset=-1)  # MobileNetV2's preprocess_input
extractor = keras.Sequential([keras.Input((*size, 3)), preprocess, base])


def features(dataset):
    return extractor.predict(dataset, verbose=0), np.concatenate([y.numpy() for _, y in dataset])


(x_train, y_train), (x_val, y_val) = features(train), features(val)
keras.utils.set_random_seed(0)
head = keras.Sequential([keras.Input(x_train.shape[1:]), keras.layers.Dropout(0.5),
                         keras.layers.Dense(len(train.class_names), activation="softmax")])
head.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = head.fit(x_train, y_train, epochs=args.epochs, batch_size=32, validation_data=(x_val, y_val), verbose=0)
keras.Sequential([keras.Input((*size, 3)), preprocess, base, head]).save(args.output)
print(json.dumps({"val_accuracy": history.history["val_accuracy"][-1], "seconds_in_process": time.perf_counter() - t0}))
