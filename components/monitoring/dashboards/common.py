"""Shared pieces of our Grafana dashboards: ids, variables, Prometheus and SQL targets, panel shorthands.

The SDK (grafana-foundation-sdk 11.6) has no PostgreSQL query builder, so ``SqlQuery`` implements its
``Dataquery`` variant the same way the generated builders do; everything else uses the SDK's builders.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

PROMETHEUS_DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Panels query whichever Prometheus the ``datasource`` variable selects (the stack's default one)."""

POSTGRES_DS_TYPE = "grafana-postgresql-datasource"
"""Plugin id of Grafana's core PostgreSQL data source (Grafana >= 10.3; 'postgres' is its old alias)."""

NAMESPACE = 'namespace="$namespace"'
"""Matcher every Prometheus panel uses, so one dashboard serves each environment's namespace."""
RATE = "$__rate_interval"

TAGS = ["timescale-k8s"]
_UID_MAX = 40  # Grafana rejects longer dashboard and data source uids
_UID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def uid_for(prefix: str, slug: str) -> str:
    """A stable Grafana uid ``<prefix>-<slug>`` (at most 40 chars; long prefixes are shortened with a hash)."""
    clean = _UID_CHARS.sub("-", prefix)
    uid = f"{clean}-{slug}"
    if len(uid) <= _UID_MAX:
        return uid
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:8]
    keep = _UID_MAX - len(slug) - len(digest) - 2
    return f"{clean[:keep]}-{digest}-{slug}"


@dataclass(frozen=True)
class DashboardIds:
    """Names that make two Monitoring instances' dashboards coexist in one Grafana."""

    prefix: str
    """The Monitoring component's name."""

    def uid(self, slug: str) -> str:
        return uid_for(self.prefix, slug)

    def title(self, title: str) -> str:
        return f"{title} ({self.prefix})"

    @property
    def analysis_datasource_uid(self) -> str:
        return self.uid("tsdb-reader")


def dashboard(ids: DashboardIds, slug: str, title: str, description: str) -> dash.Dashboard:
    """A dashboard with our uid/title scheme, tags, a sane time range and auto-refresh."""
    return (
        dash.Dashboard(ids.title(title))
        .uid(ids.uid(slug))
        .description(description)
        .tags(TAGS)
        .editable()
        .time("now-3h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )


def prometheus_dashboard(ids: DashboardIds, slug: str, title: str, description: str,
                         namespace_metric: str) -> dash.Dashboard:
    """A dashboard over Prometheus with the ``$datasource`` and ``$namespace`` variables."""
    board = dashboard(ids, slug, title, description)
    for variable in prometheus_variables(namespace_metric):
        board = board.with_variable(variable)
    return board


def prometheus_variables(namespace_metric: str) -> list[cogbuilder.Builder[model.VariableModel]]:
    """``$datasource`` (a Prometheus) and ``$namespace`` (namespaces that export ``namespace_metric``)."""
    return [
        dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        dash.QueryVariable("namespace")
        .label("Namespace")
        .datasource(PROMETHEUS_DS)
        .query(f"label_values({namespace_metric}, namespace)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC),
    ]


def prom(expr: str, legend: str = "") -> prometheus.Dataquery:
    """A range query; ``legend`` uses Grafana's ``{{label}}`` syntax."""
    query = prometheus.Dataquery().expr(expr).range().datasource(PROMETHEUS_DS)
    return query.legend_format(legend) if legend else query


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL target for Grafana's PostgreSQL data source."""

    def __init__(self, datasource_uid: str, sql: str, fmt: Literal["time_series", "table"] = "time_series") -> None:
        self._internal = _SqlDataquery(datasource_uid, sql, fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._internal


class _SqlDataquery(cogvariants.Dataquery):
    def __init__(self, datasource_uid: str, sql: str, fmt: str) -> None:
        self.datasource = model.DataSourceRef(type_val=POSTGRES_DS_TYPE, uid=datasource_uid)
        self.raw_sql = sql
        self.format_val = fmt
        self.ref_id = ""

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "rawSql": self.raw_sql,
            "rawQuery": True,
            "editorMode": "code",
            "format": self.format_val,
        }


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is ``None`` (the base colour)."""
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps]
    )


def timeseries_panel(title: str, unit: str, *targets: cogbuilder.Builder[cogvariants.Dataquery],
                     description: str = "", span: int = 12, height: int = 8,
                     max_data_points: int | None = None) -> timeseries.Panel:
    """A time series panel with a table legend (shows last/max so numbers are readable); ``max_data_points`` caps
    the points Grafana asks for per series (its ``$__interval`` is the range divided by it)."""
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit).span(span).height(height)
        .legend(_table_legend())
        .line_width(1).fill_opacity(10)
    )
    if max_data_points is not None:
        panel = panel.max_data_points(max_data_points)
    for ref_id, target in zip("ABCDEFGH", targets):
        _set_ref(target, ref_id)
        panel = panel.with_target(target)
    return panel


def _table_legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def stat_panel(title: str, unit: str, *targets: cogbuilder.Builder[cogvariants.Dataquery],
               description: str = "", span: int = 6, height: int = 5,
               steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
               mappings: dict[str, tuple[str, str]] | None = None) -> stat.Panel:
    """A single-value panel with colour thresholds and optional value -> (text, colour) mappings."""
    panel = (
        stat.Panel().title(title).description(description).unit(unit).span(span).height(height)
        .thresholds(thresholds(*steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        panel = panel.mappings([
            model.ValueMap(options={value: model.ValueMappingResult(text=text, color=color)
                                    for value, (text, color) in mappings.items()})
        ])
    for ref_id, target in zip("ABCDEFGH", targets):
        _set_ref(target, ref_id)
        panel = panel.with_target(target)
    return panel


def table_panel(title: str, target: cogbuilder.Builder[cogvariants.Dataquery], description: str = "",
                span: int = 24, height: int = 10) -> table.Panel:
    """A table panel with one query."""
    _set_ref(target, "A")
    return table.Panel().title(title).description(description).span(span).height(height).with_target(target)


def _set_ref(target: cogbuilder.Builder[cogvariants.Dataquery], ref_id: str) -> None:
    target.build().ref_id = ref_id  # builders return their live model, so this sets the refId in place


def to_json(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard model as the JSON Grafana stores."""
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))


def targets(dashboard_json: dict[str, Any]) -> list[dict[str, Any]]:
    """Every query target of a dashboard (panels inside rows included)."""
    panels = list(dashboard_json.get("panels", []))
    for panel in list(panels):
        panels.extend(panel.get("panels", []))
    return [t for panel in panels for t in panel.get("targets", [])]
