#!/usr/bin/env python
"""A LitServe server around the learner, as LitServe's docs write one, batching up to 8.

    python bench/peers/litserve_app.py MODEL PORT

POST /predict with a multipart `file` field; the answer is {"label": ..., "probabilities": ...}.
"""

import io
import sys

import litserve as ls
from fastai.vision.all import PILImage, load_learner

MODEL, PORT = sys.argv[1], int(sys.argv[2])


class FastaiLitAPI(ls.LitAPI):
    def setup(self, device):
        self.learn = load_learner(MODEL)
        self.categories = list(self.learn.dls.vocab)

    def decode_request(self, request):
        return PILImage.create(io.BytesIO(request["file"].file.read()))

    def batch(self, inputs):
        return inputs  # a list of images: fastai's test_dl makes the batch

    def predict(self, images):
        probs, _ = self.learn.get_preds(dl=self.learn.dls.test_dl(images))
        return probs

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        best = int(output.argmax())
        return {
            "label": self.categories[best],
            "probabilities": dict(zip(self.categories, map(float, output), strict=True)),
        }


if __name__ == "__main__":
    api = FastaiLitAPI(max_batch_size=8, batch_timeout=0.05)
    server = ls.LitServer(api, accelerator="cpu")
    server.run(host="127.0.0.1", port=PORT, generate_client_file=False)
