"""`cnntool report`: one self-contained HTML file (or Markdown + PNG files) from runs, sweeps, seeds and recipes.

The builder (:mod:`cnntool.report.build`) turns its inputs into sections of blocks (tables, figures, code);
every figure comes from the existing figure functions (cnntool.viz, cnntool.experiments.plots,
cnntool.evaluation.evaluate_run); the Jinja2 templates in ``templates/`` lay them out. Importing this
package imports nothing heavy.
"""

from cnntool.report.build import build_report

__all__ = ["build_report"]
