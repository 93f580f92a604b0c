#!/usr/bin/env python
"""A Gradio Interface around the learner, as the fast.ai course and Gradio's docs write it.

    python bench/peers/gradio_app.py MODEL PORT          # default settings
    python bench/peers/gradio_app.py MODEL PORT --batch  # batch=True, max_batch_size=8

The default is the course's `classify_image` with `learn.predict`; with --batch the function
takes a list of images and runs them through one `get_preds` (Gradio's "Batch functions" guide).
"""

import sys

import gradio as gr
from fastai.vision.all import PILImage, load_learner

MODEL, PORT = sys.argv[1], int(sys.argv[2])
learn = load_learner(MODEL)
categories = learn.dls.vocab


def classify_image(img):
    pred, idx, probs = learn.predict(img)
    return dict(zip(categories, map(float, probs), strict=True))


def classify_images(imgs):
    dl = learn.dls.test_dl([PILImage.create(img) for img in imgs])
    probs, _ = learn.get_preds(dl=dl)
    return [[dict(zip(categories, map(float, row), strict=True)) for row in probs]]


if "--batch" in sys.argv:
    demo = gr.Interface(
        fn=classify_images, inputs=gr.Image(), outputs=gr.Label(), batch=True, max_batch_size=8
    )
else:
    demo = gr.Interface(fn=classify_image, inputs=gr.Image(), outputs=gr.Label())

demo.launch(server_name="127.0.0.1", server_port=PORT)
