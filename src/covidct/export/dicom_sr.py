"""sr.dcm: a TID 1500 Measurement Report (Comprehensive 3D SR) of the case measurements.

Values are taken from the result.json document (``build_result``), so the SR and
result.json say exactly the same numbers. Structure (DICOM PS3.16 TID 1500):

- Volumetric ROI group "Right lung" (TID 1411), referencing SEG segment 1: lung volume
  (SCT 118565006 Volume, cm3), % of the lung involved, and per zone (finding site Lung,
  laterality Right, topographical modifier Upper / Mid / Lower) % involved and zone score;
- the same for "Left lung" (segment 2);
- Volumetric ROI group "Infection" (segment 4): infection volume (cm3), % of both lungs
  involved, Corona score (cm3), severity score (0-24);
- Measurement group "Case" (TID 1501): total lung volume (cm3), positive-slice ratio and
  the case threshold it was compared with, and the decision (qualitative evaluation).

Units are UCUM (``cm3``, ``%``, ``{ratio}``, ``{score}``). Concepts with no standard code
(Corona score, % lung involved, severity and zone scores, the decision) use the private
coding scheme ``99COVIDCT``.
"""

from __future__ import annotations

from typing import Any

import highdicom as hd
from highdicom.sr.coding import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from covidct import __version__
from covidct.export.dicom_seg import LEFT_LUNG, MANUFACTURER, RIGHT_LUNG, SEGMENT_NUMBER
from covidct.export.dicom_uids import OutputUIDs
from covidct.io.dicom_source import SourceStack

SR_SERIES_NUMBER = 9902
SCHEME = "99COVIDCT"

CM3 = CodedConcept("cm3", "UCUM", "cubic centimeter")
PERCENT = CodedConcept("%", "UCUM", "percent")
RATIO = CodedConcept("{ratio}", "UCUM", "ratio")
SCORE = CodedConcept("{score}", "UCUM", "score")

VOLUME = codes.SCT.Volume  # 118565006
PERCENT_INVOLVED = CodedConcept("PCTLUNGINVOLVED", SCHEME, "Percent of lung involved")
CORONA_SCORE = CodedConcept("CORONASCORE", SCHEME, "Corona score")
SEVERITY_SCORE = CodedConcept("SEVERITYSCORE", SCHEME, "Severity score")
ZONE_SCORE = CodedConcept("ZONESCORE", SCHEME, "Zone involvement score")
POSITIVE_RATIO = CodedConcept("POSSLICERATIO", SCHEME, "Positive slice ratio")
CASE_THRESHOLD = CodedConcept("CASETHRESHOLD", SCHEME, "Case decision threshold")
CASE_DECISION = CodedConcept("CASEDECISION", SCHEME, "COVID-19 pneumonia case decision")
DECISION_VALUES = {
    "covid-suspected": CodedConcept("COVIDSUSPECTED", SCHEME, "COVID-19 pneumonia suspected"),
    "not-suspected": CodedConcept("NOTSUSPECTED", SCHEME, "COVID-19 pneumonia not suspected"),
    "indeterminate": CodedConcept("INDETERMINATE", SCHEME, "Indeterminate"),
}
LEVELS = {"upper": CodedConcept("261183002", "SCT", "Upper"),
          "middle": CodedConcept("255562008", "SCT", "Mid"),
          "lower": CodedConcept("261122009", "SCT", "Lower")}
SIDES = {"right": (codes.SCT.Right, RIGHT_LUNG), "left": (codes.SCT.Left, LEFT_LUNG)}


def _algorithm(result_models: dict[str, Any]) -> hd.sr.AlgorithmIdentification:
    params = [f"{role} {info.get('name')} sha256 {info.get('sha256')}"
              for role, info in sorted(result_models.items())]
    return hd.sr.AlgorithmIdentification(name="covidct", version=__version__, parameters=params)


def _measure(name: CodedConcept, value: float, unit: CodedConcept, algorithm,
             sites: list[hd.sr.FindingSite] | None = None) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algorithm,
                             finding_sites=sites)


def _referenced_segment(seg: Dataset, number: int, series_uid: str) -> hd.sr.ReferencedSegment:
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(series_uid))


_VolumetricGroup = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations


def _side_group(doc: dict[str, Any], side: str, seg: Dataset, stack: SourceStack,
                uids: OutputUIDs, algorithm) -> _VolumetricGroup:
    laterality, lung_code = SIDES[side]
    lung_site = hd.sr.FindingSite(codes.SCT.Lung, laterality=laterality)
    infection = doc["infection"]
    measurements = [
        _measure(VOLUME, doc["lung"][f"{side}_cm3"], CM3, algorithm, [lung_site]),
        _measure(PERCENT_INVOLVED, infection[f"{side}_percent"], PERCENT, algorithm, [lung_site]),
    ]
    for zone in infection["zones"]:
        if zone["side"] != side:
            continue
        site = [hd.sr.FindingSite(codes.SCT.Lung, laterality=laterality,
                                  topographical_modifier=LEVELS[zone["level"]])]
        measurements.append(_measure(PERCENT_INVOLVED, zone["percent"], PERCENT, algorithm, site))
        measurements.append(_measure(ZONE_SCORE, zone["score"], SCORE, algorithm, site))
    label = f"{side.capitalize()} lung"
    return _VolumetricGroup(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.uid(f"sr tracking {label}"),
                                                     identifier=label),
        referenced_segment=_referenced_segment(seg, SEGMENT_NUMBER[label], stack.series_uid),
        finding_type=lung_code, algorithm_id=algorithm, measurements=measurements)


def build_measurement_report(doc: dict[str, Any], seg: Dataset, stack: SourceStack,
                             uids: OutputUIDs) -> hd.sr.MeasurementReport:
    """The TID 1500 content tree from a result.json document and the written SEG."""
    algorithm = _algorithm(doc["models"])
    lungs_site = [hd.sr.FindingSite(codes.SCT.Lung)]
    infection = doc["infection"]
    groups: list[Any] = [_side_group(doc, side, seg, stack, uids, algorithm)
                         for side in ("right", "left")]
    groups.append(_VolumetricGroup(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.uid("sr tracking Infection"),
                                                     identifier="Infection"),
        referenced_segment=_referenced_segment(seg, SEGMENT_NUMBER["Infection"],
                                               stack.series_uid),
        finding_type=codes.SCT.Lesion, algorithm_id=algorithm, finding_sites=lungs_site,
        measurements=[
            _measure(VOLUME, infection["volume_cm3"], CM3, algorithm),
            _measure(PERCENT_INVOLVED, infection["percent_of_lung"], PERCENT, algorithm),
            _measure(CORONA_SCORE, doc["corona_score_cm3"], CM3, algorithm),
            _measure(SEVERITY_SCORE, infection["severity_score"], SCORE, algorithm),
        ]))
    decision = doc["decision"]
    case_measurements = [_measure(VOLUME, doc["lung"]["volume_cm3"], CM3, algorithm, lungs_site)]
    if decision.get("positive_slice_ratio") is not None:
        case_measurements.append(_measure(POSITIVE_RATIO, decision["positive_slice_ratio"],
                                          RATIO, algorithm))
    if decision.get("threshold") is not None:
        case_measurements.append(_measure(CASE_THRESHOLD, decision["threshold"], RATIO,
                                          algorithm))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.uid("sr tracking Case"),
                                                     identifier="Case"),
        algorithm_id=algorithm, finding_sites=lungs_site, measurements=case_measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            CASE_DECISION, DECISION_VALUES[decision["label"]])]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.uid("device observer"), name="covidct", manufacturer_name=MANUFACTURER,
            model_name=f"covidct {__version__}"))
    return hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ComputedTomography,
        imaging_measurements=groups)


def build_sr(doc: dict[str, Any], seg: Dataset, stack: SourceStack,
             uids: OutputUIDs) -> hd.sr.Comprehensive3DSR:
    """The Comprehensive 3D SR dataset; evidence: the SEG and the source images."""
    report = build_measurement_report(doc, seg, stack, uids)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *stack.datasets], content=report,
        series_instance_uid=uids.uid("sr series"), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.uid("sr instance"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description="covidct measurements (not for diagnostic use)")
