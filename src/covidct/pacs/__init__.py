"""covidct in a PACS: an Orthanc worker that analyses new CT series and stores DICOM SEG, SR
and secondary captures back into their study (DICOMweb: WADO-RS to read, STOW-RS to store).

Modules: ``client`` (HTTP, authentication, retries), ``changes`` (Orthanc's changes feed),
``selection`` (which series to analyse), ``state`` (the restart-safe state file),
``outputs`` (the analysis that makes the DICOM objects), ``worker`` (the loop).
"""
