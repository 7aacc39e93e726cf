"""The study driver: data, pre-training, grid cells, ablation, outputs.

`run_study` is what scripts/reproduce_paper.py calls. In order:

1. data: DigitScenes in `data_dir` (made with the default sizes when it has
   no `digitscenes.json`), and the labeled subsets the selected cells need
   (`<output_dir>/data/`, see subsets.py);
2. the grid cells (cells.py), each one self_train subprocess
   (run_cell.py); the pre-training run happens once, just before the first
   'pretrained' cell (skipped when `<output_dir>/pretrain/
   pretrain_metrics.json` exists); if it fails, the pre-trained cells fail
   with its error and the others go on;
3. the ablation (ablation.py), after the grid; it needs the S4/100%/rand/
   seed-0 cell's teacher and runs that cell first when it is missing;
4. after every cell: `results.json`, `tables.md`, `tables.json`,
   `ap_vs_fraction.png` in `output_dir` (atomic writes), over every cell of
   the grid and ablation found on disk, so a partial run reports what it
   has and `--only` runs do not drop the other cells.

Returns the process exit code: 1 if a selected cell (or the pre-training
it needed) failed, else 0.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from experiments.study import ablation as ablation_lib
from experiments.study import cells as cells_lib
from experiments.study import commands
from experiments.study import files
from experiments.study import plot
from experiments.study import progress as progress_lib
from experiments.study import run_cell
from experiments.study import subsets
from experiments.study import tables as tables_lib

RESULTS_FILE = 'results.json'
TABLES_MD = 'tables.md'
TABLES_JSON = 'tables.json'
PLOT_FILE = 'ap_vs_fraction.png'


@dataclasses.dataclass
class Options:
  """What to run (flags of scripts/reproduce_paper.py)."""
  grid: str
  seeds: Sequence[int]
  settings: commands.Settings
  only: str = ''
  ablation: bool = True
  dry_run: bool = False


def default_prepare_data(data_dir: str) -> int:
  """Makes DigitScenes if missing; returns the labeled split's size."""
  from st_tf.datasets.digitscenes import scenes as digitscenes  # pylint: disable=g-import-not-at-top
  if not os.path.exists(os.path.join(data_dir, digitscenes.METADATA_FILE)):
    digitscenes.ensure_digitscenes(output_dir=data_dir)
  meta = digitscenes.load_metadata(data_dir)
  return int(meta['splits']['labeled']['num_examples'])


def grid_spec(settings: commands.Settings,
              cell: cells_lib.Cell) -> run_cell.CellSpec:
  """The subprocess of a grid cell (paths only; writes nothing)."""
  model_dir = commands.cell_dir(settings, cell.name)
  pattern = subsets.labeled_pattern(settings.data_dir,
                                    commands.data_subset_dir(settings),
                                    cell.fraction)
  bindings = commands.cell_bindings(
      cell, settings, pattern,
      init_checkpoint=commands.pretrain_backbone(settings))
  return run_cell.CellSpec(
      cell.name, model_dir,
      commands.self_train_argv(settings, bindings, model_dir),
      meta=dict(cell.as_dict(), kind='grid'))


def ablation_spec(settings: commands.Settings,
                  cell: ablation_lib.AblationCell) -> run_cell.CellSpec:
  base = ablation_lib.BASE_CELL
  model_dir = ablation_lib.ablation_dir(settings, cell)
  bindings = commands.cell_bindings(
      base, ablation_lib.run_settings(settings, cell),
      subsets.labeled_pattern(settings.data_dir,
                              commands.data_subset_dir(settings),
                              base.fraction),
      extra=ablation_lib.extra_bindings(settings, cell))
  return run_cell.CellSpec(
      cell.name, model_dir,
      commands.self_train_argv(settings, bindings, model_dir),
      meta=dict(cell.as_dict(), kind='ablation'))


class _Study:
  """State of one run_study call."""

  def __init__(self, options: Options, runner: run_cell.Runner,
               print_fn: Callable[[str], Any],
               prepare_data: Callable[[str], int]):
    self.options = options
    self.settings = options.settings
    self.runner = runner
    self.print = print_fn
    self.prepare_data = prepare_data
    self.all_cells = cells_lib.enumerate_cells(options.grid, options.seeds)
    self.selected = cells_lib.filter_cells(self.all_cells, options.only)
    self.all_ablation = ablation_lib.enumerate_ablation()
    self.selected_ablation = ([c for c in self.all_ablation
                               if not options.only or options.only in c.name]
                              if options.ablation else [])
    self.specs = {c.name: grid_spec(self.settings, c) for c in self.all_cells}
    self.ablation_specs = {c.name: ablation_spec(self.settings, c)
                           for c in self.all_ablation}
    self.records: Dict[str, Dict[str, Any]] = {}
    self.ablation_records: Dict[str, Dict[str, Any]] = {}
    self.pretrain: Optional[Dict[str, Any]] = None
    self.failed: List[str] = []
    self.num_labeled: Optional[int] = None

  # ---------------------------------------------------------------- outputs
  def _grid_record(self, name: str) -> Dict[str, Any]:
    return self.records.get(name) or run_cell.status_record(self.specs[name])

  def _ablation_record(self, name: str) -> Dict[str, Any]:
    record = (self.ablation_records.get(name) or
              run_cell.status_record(self.ablation_specs[name]))
    return ablation_lib.ablation_record(record,
                                        self.ablation_specs[name].model_dir)

  def write_outputs(self) -> str:
    """Writes results.json, tables.md/json and the plot; returns tables.md."""
    out = self.settings.output_dir
    grid = [self._grid_record(c.name) for c in self.all_cells]
    abl = [self._ablation_record(c.name) for c in self.all_ablation]
    settings = dataclasses.asdict(self.settings)
    settings.update(grid=self.options.grid, seeds=list(self.options.seeds),
                    steps_per_epoch=commands.steps_per_epoch(
                        self.settings.steps),
                    warmup_steps=commands.warmup_steps(self.settings.steps))
    pretrain = self.pretrain
    if pretrain is None and commands.pretrain_done(self.settings):
      pretrain = {'model_dir': commands.pretrain_dir(self.settings),
                  'ran': False, 'error': None,
                  'metrics': files.read_json(os.path.join(
                      commands.pretrain_dir(self.settings),
                      commands.PRETRAIN_METRICS))}
    files.write_json(os.path.join(out, RESULTS_FILE), {
        'settings': settings, 'pretrain': pretrain, 'cells': grid,
        'ablation': abl,
        'fields': {'supervised_ap': 'teacher val AP in [0, 1]',
                   'student_ap': 'self-trained student val AP in [0, 1]',
                   'gain': 'student_ap - supervised_ap',
                   'pseudo_boxes_per_image': 'pseudo boxes kept per '
                                             'unlabeled image',
                   'wall_seconds': 'sum of the self_train stage wall times '
                                   '(s), over the attempts that made them',
                   'run_seconds': 'wall time of the subprocess in this '
                                  'invocation (0 when skipped)'}})
    tables = tables_lib.build(grid, abl)
    files.write_json(os.path.join(out, TABLES_JSON), tables)
    markdown = tables_lib.to_markdown(tables, grid)
    files.write_text(os.path.join(out, TABLES_MD), markdown)
    plot.plot_ap_vs_fraction(grid, os.path.join(out, PLOT_FILE))
    return markdown

  # ---------------------------------------------------------------- running
  def ensure_pretrain(self) -> Optional[str]:
    """Runs pre-training once if needed; returns an error or None."""
    if self.pretrain is not None:
      return self.pretrain.get('error')
    s = self.settings
    argv = commands.pretrain_argv(s)
    metrics_path = os.path.join(commands.pretrain_dir(s),
                                commands.PRETRAIN_METRICS)
    self.pretrain = {'model_dir': commands.pretrain_dir(s),
                     'command': commands.shell_line(argv), 'ran': False,
                     'run_seconds': 0.0, 'error': None}
    if not commands.pretrain_done(s):
      self.print(f'[pretrain] start: {commands.shell_line(argv)}')
      failure, seconds, tail = run_cell.run_logged(
          argv, commands.pretrain_dir(s), self.runner)
      self.pretrain.update(ran=True, run_seconds=seconds)
      if failure is not None or not commands.pretrain_done(s):
        self.pretrain['error'] = (
            f'pre-training failed ({failure or "exit code 0"}; '
            f'{metrics_path} '
            f'{"exists" if os.path.exists(metrics_path) else "missing"})'
            + (f'\n{tail}' if tail else ''))
        self.failed.append('pretrain')
        self.print(f'[pretrain] FAILED after '
                   f'{progress_lib.format_seconds(seconds)}: '
                   f'{self.pretrain["error"].splitlines()[0]}')
        return self.pretrain['error']
      self.print(f'[pretrain] done in {progress_lib.format_seconds(seconds)}')
    self.pretrain['metrics'] = files.read_json(metrics_path)
    if not os.path.exists(commands.pretrain_backbone(s)):
      self.pretrain['error'] = ('pre-training wrote no backbone checkpoint '
                                f'at {commands.pretrain_backbone(s)}')
      self.failed.append('pretrain')
    return self.pretrain['error']

  def run_grid_cell(self, cell: cells_lib.Cell,
                    progress: progress_lib.Progress) -> Dict[str, Any]:
    spec = self.specs[cell.name]
    progress.start(cell.name)
    error = self.ensure_pretrain() if cell.init == 'pretrained' else None
    if error is not None:
      record = run_cell.status_record(spec)
      record.update(status=run_cell.FAILED, error=error)
    else:
      subsets.ensure_subset(self.settings.data_dir,
                            commands.data_subset_dir(self.settings),
                            cell.fraction, self.num_labeled)
      record = run_cell.run_cell(spec, self.runner)
    progress.end(cell.name, record)
    return record

  def _needs_run(self, spec: run_cell.CellSpec) -> bool:
    return run_cell.status_record(spec)['status'] != run_cell.COMPLETE

  def run(self) -> int:
    if self.options.dry_run:
      return self.dry_run()
    self.num_labeled = self.prepare_data(self.settings.data_dir)
    grid_todo = [c for c in self.selected
                 if self._needs_run(self.specs[c.name])]
    abl_todo = [c for c in self.selected_ablation
                if self._needs_run(self.ablation_specs[c.name])]
    base = ablation_lib.BASE_CELL
    needs_base = bool(abl_todo) and not ablation_lib.base_teacher_ready(
        self.settings) and base not in grid_todo
    progress = progress_lib.Progress(
        len(grid_todo) + len(abl_todo) + int(needs_base), self.print)
    self.print(f'Study in {self.settings.output_dir}: {len(self.selected)} '
               f'grid cells selected ({len(grid_todo)} to run), '
               f'{len(self.selected_ablation)} ablation runs '
               f'({len(abl_todo)} to run), {self.settings.steps} steps.')
    for cell in self.selected:
      if cell not in grid_todo:
        progress.skip(cell.name, self._grid_record(cell.name))
        continue
      record = self.run_grid_cell(cell, progress)
      self.records[cell.name] = record
      if record['status'] != run_cell.COMPLETE:
        self.failed.append(cell.name)
      self.write_outputs()
    if (abl_todo and not ablation_lib.base_teacher_ready(self.settings) and
        base.name not in self.records):
      self.print(f'The ablation reuses the teacher of {base.name}: '
                 'running that cell first.')
      record = self.run_grid_cell(base, progress)
      self.records[base.name] = record
      if record['status'] != run_cell.COMPLETE:
        self.failed.append(base.name)
      self.write_outputs()
    for cell in self.selected_ablation:
      spec = self.ablation_specs[cell.name]
      if cell not in abl_todo:
        progress.skip(cell.name, run_cell.status_record(spec))
        continue
      progress.start(cell.name)
      if not ablation_lib.base_teacher_ready(self.settings):
        record = run_cell.status_record(spec)
        record.update(status=run_cell.FAILED,
                      error=f'the teacher of {base.name} is not trained '
                            f'({ablation_lib.base_teacher_dir(self.settings)}'
                            ')')
      else:
        ablation_lib.reuse_teacher_outputs(self.settings, cell)
        record = run_cell.run_cell(spec, self.runner)
      progress.end(cell.name, record)
      self.ablation_records[cell.name] = record
      if record['status'] != run_cell.COMPLETE:
        self.failed.append(cell.name)
      self.write_outputs()
    markdown = self.write_outputs()
    self.print(markdown)
    out = self.settings.output_dir
    self.print(f'Wrote {os.path.join(out, RESULTS_FILE)}, {TABLES_MD}, '
               f'{TABLES_JSON}, {PLOT_FILE}.')
    if self.failed:
      self.print(f'FAILED: {", ".join(self.failed)} (errors in '
                 f'{RESULTS_FILE} and each cell\'s {run_cell.LOG_FILE}).')
      return 1
    return 0

  def dry_run(self) -> int:
    """Prints the cells and their commands; runs and writes nothing."""
    s = self.settings
    if any(c.init == 'pretrained' for c in self.selected):
      state = 'done, skipped' if commands.pretrain_done(s) else 'would run'
      self.print(f'# pretrain ({state}):\n'
                 f'{commands.shell_line(commands.pretrain_argv(s))}')
    for spec in ([self.specs[c.name] for c in self.selected] +
                 [self.ablation_specs[c.name]
                  for c in self.selected_ablation]):
      state = run_cell.status_record(spec)['status']
      self.print(f'# {spec.name} ({state})\n'
                 f'{commands.shell_line(spec.argv)}')
    self.print(f'{len(self.selected)} grid cells, '
               f'{len(self.selected_ablation)} ablation runs (dry run: '
               'nothing ran; commands run from the repository root).')
    return 0


def run_study(options: Options,
              runner: run_cell.Runner = run_cell.subprocess_runner,
              print_fn: Callable[[str], Any] = functools.partial(
                  print, flush=True),
              prepare_data: Callable[[str], int] = default_prepare_data
              ) -> int:
  """Runs (or resumes) the study; returns the exit code (module doc)."""
  return _Study(options, runner, print_fn, prepare_data).run()
