"""The reading and reporting records as the JSON of `/api/...` (camelCase keys, ISO dates);
the API and the pages' JSON both use these shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from pedipacs.jobs.queue import JobRecord
from pedipacs.model.reports import (
    ClaimRecord,
    CriticalResultRecord,
    PatientLine,
    PatientTimeline,
    PriorStudy,
    ReadingItem,
    ReportRecord,
    TimelineExam,
    TurnaroundFigures,
    TurnaroundReport,
)
from pedipacs.reports.templates import ReportTemplate
from pedipacs.reports.timeline import PatientMatch


def iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def patient_json(patient: PatientLine) -> dict[str, Any]:
    return {
        "id": patient.patient_id,
        "issuer": patient.issuer,
        "name": patient.name,
        "birthDate": iso(patient.birth_date),
        "sex": patient.sex,
    }


def claim_json(claim: ClaimRecord) -> dict[str, Any]:
    return {
        "accessionNumber": claim.accession_number,
        "claimedBy": claim.username,
        "claimedAt": iso(claim.claimed_at),
        "expiresAt": iso(claim.expires_at),
    }


def critical_json(result: CriticalResultRecord) -> dict[str, Any]:
    return {
        "id": result.id,
        "accessionNumber": result.accession_number,
        "patient": patient_json(result.patient),
        "finding": result.finding,
        "flaggedBy": result.flagged_by,
        "flaggedAt": iso(result.flagged_at),
        "referringPhysician": result.referring_physician,
        "acknowledgedBy": result.acknowledged_by,
        "acknowledgedAt": iso(result.acknowledged_at),
        "note": result.acknowledgement_note,
    }


def report_json(report: ReportRecord) -> dict[str, Any]:
    return {
        "id": report.id,
        "accessionNumber": report.accession_number,
        "studyInstanceUids": list(report.study_instance_uids),
        "patient": patient_json(report.patient),
        "orderStatus": str(report.order_status),
        "priority": str(report.priority),
        "procedure": report.procedure,
        "reason": report.reason,
        "referringPhysician": report.referring_physician,
        "status": str(report.status),
        "template": report.template_key,
        "sections": report.sections,
        "revision": report.revision,
        "author": report.author,
        "createdAt": iso(report.created_at),
        "updatedAt": iso(report.updated_at),
        "preliminaryAt": iso(report.preliminary_at),
        "preliminaryBy": report.preliminary_by,
        "signedAt": iso(report.signed_at),
        "signedBy": report.signed_by,
        "addenda": [
            {"text": a.text, "author": a.author, "createdAt": iso(a.created_at)}
            for a in report.addenda
        ],
        "criticalResults": [critical_json(c) for c in report.critical_results],
        "versions": [
            {
                "number": v.number,
                "kind": str(v.kind),
                "sections": v.sections,
                "addendum": v.addendum,
                "author": v.author,
                "createdAt": iso(v.created_at),
            }
            for v in report.versions
        ],
        "pdf": f"/api/reports/{quote(report.accession_number, safe='')}/pdf"
        if report.status.is_released
        else None,
    }


def reading_item_json(item: ReadingItem) -> dict[str, Any]:
    return {
        "accessionNumber": item.accession_number,
        "patient": patient_json(item.patient),
        "urgency": str(item.urgency),
        "priority": str(item.priority),
        "patientClass": item.patient_class,
        "location": item.location,
        "department": item.department,
        "reason": item.reason,
        "procedure": item.procedure,
        "modalities": list(item.modalities),
        "bodyParts": list(item.body_parts),
        "studyInstanceUids": list(item.study_instance_uids),
        "waitingSince": iso(item.waiting_since),
        "priors": item.number_of_priors,
        "reportStatus": str(item.report_status) if item.report_status else None,
        "claimedBy": item.claimed_by,
        "claimExpiresAt": iso(item.claim_expires_at),
    }


def prior_json(prior: PriorStudy) -> dict[str, Any]:
    return {
        "studyInstanceUid": prior.study_instance_uid,
        "studyDate": iso(prior.study_date),
        "description": prior.study_description,
        "modalities": list(prior.modalities),
        "accessionNumber": prior.accession_number,
        "instances": prior.number_of_instances,
        "reportStatus": str(prior.report_status) if prior.report_status else None,
    }


def template_json(template: ReportTemplate) -> dict[str, Any]:
    return {
        "key": template.key,
        "title": template.title,
        "modalities": list(template.modalities),
        "builtIn": template.is_built_in,
        "sections": [
            {"key": s.key, "title": s.title, "required": s.is_required, "text": s.text}
            for s in template.sections
        ],
    }


def exam_json(exam: TimelineExam) -> dict[str, Any]:
    return {
        "accessionNumber": exam.accession_number,
        "status": str(exam.status) if exam.status else None,
        "priority": str(exam.priority) if exam.priority else None,
        "procedure": exam.procedure,
        "reason": exam.reason,
        "examDate": iso(exam.exam_date),
        "modalities": list(exam.modalities),
        "studyInstanceUids": list(exam.study_instance_uids),
        "instances": exam.number_of_instances,
        "report": report_json(exam.report) if exam.report else None,
    }


def timeline_json(timeline: PatientTimeline) -> dict[str, Any]:
    return {
        "patient": patient_json(timeline.patient),
        "otherIdentifiers": list(timeline.other_identifiers),
        "exams": [exam_json(exam) for exam in timeline.exams],
        "openCriticalResults": [critical_json(c) for c in timeline.open_critical_results],
    }


def match_json(match: PatientMatch) -> dict[str, Any]:
    return {
        "patient": patient_json(match.patient),
        "isTemporary": match.is_temporary,
        "studies": match.number_of_studies,
        "lastExam": iso(match.last_exam),
    }


def figures_json(figures: TurnaroundFigures) -> dict[str, Any]:
    return {
        "group": figures.group,
        "count": figures.count,
        "orderToImages": {"p50": figures.order_to_images_p50, "p90": figures.order_to_images_p90},
        "imagesToPreliminary": {
            "p50": figures.images_to_preliminary_p50,
            "p90": figures.images_to_preliminary_p90,
        },
        "imagesToFinal": {"p50": figures.images_to_final_p50, "p90": figures.images_to_final_p90},
    }


def turnaround_json(report: TurnaroundReport) -> dict[str, Any]:
    return {
        "since": iso(report.since),
        "until": iso(report.until),
        "unit": "minutes",
        "overall": figures_json(report.overall),
        "byModality": [figures_json(f) for f in report.by_modality],
        "byPriority": [figures_json(f) for f in report.by_priority],
        "byShift": [figures_json(f) for f in report.by_shift],
        "overdue": [
            {
                "accessionNumber": o.accession_number,
                "patient": patient_json(o.patient),
                "priority": str(o.priority),
                "modalities": list(o.modalities),
                "waitingSince": iso(o.waiting_since),
                "minutesWaiting": o.minutes_waiting,
                "targetMinutes": o.target_minutes,
                "reportStatus": str(o.report_status) if o.report_status else None,
            }
            for o in report.overdue
        ],
    }


def job_json(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "subject": job.subject,
        "state": str(job.state),
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "dueAt": iso(job.due_at),
        "createdAt": iso(job.created_at),
        "finishedAt": iso(job.finished_at),
        "lastError": job.last_error,
        "outcome": job.outcome,
        "payload": job.payload,
    }
