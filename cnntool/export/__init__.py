"""ONNX export (torch side) and prediction with onnxruntime + numpy + Pillow (no torch).

Nothing is imported here: ``cnntool.export.runtime`` must load without torch, and the exporter
(``cnntool.export.onnx_export``) imports torch itself.
"""
