"""dlib's 128-D face ResNet: its file format (``reader``), the network in PyTorch (``network``) and
the embedders that run it (``runtimes``: ``dlib``, ``dlib-torch``, ``dlib-onnx``, ``dlib-int8``).

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` is the reference face embedder, but dlib runs
it one face at a time on the CPU (~90 ms per face). The PyTorch port gives the same vectors (max
abs difference ~5e-7) about 20x faster on CPU, with batching, CUDA, gradients for Grad-CAM and
fine-tuning, and an ONNX export.
"""
