/** @type {AppTypes.Config} */
// OHIF 3.x configuration for the viewer that `pacs --viewer-dir DIR` serves at /viewer/.
//
// tests/ohif/setup.sh copies this file over the published build's dist/app-config.js.
// One DICOMweb data source: the pacs server's own /dicom-web on the same origin (same
// host:port as the page), so there is no CORS and nothing leaves the machine.
// No investigational-use dialog, no onboarding tours, no telemetry, no external URLs.
const pacsDicomWebRoot = window.location.origin + '/dicom-web';

window.config = {
  name: 'pacs',
  // The viewer lives under /viewer/ (setup.sh also rewrites the build's asset paths).
  routerBasename: '/viewer',
  extensions: [],
  modes: [],
  // Global customizations: no onboarding tour popping up over the viewport.
  customizationService: {
    'ohif.tours': [],
  },
  showStudyList: true,
  // Small machines (CI has 2 cores).
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: {
    option: 'never',
  },
  maxNumRequests: {
    interaction: 100,
    thumbnail: 10,
    prefetch: 10,
  },
  showErrorDetails: 'always',
  defaultDataSourceName: 'pacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacs',
      configuration: {
        friendlyName: 'pacs DICOMweb',
        name: 'pacs',
        qidoRoot: pacsDicomWebRoot,
        wadoRoot: pacsDicomWebRoot,
        wadoUriRoot: pacsDicomWebRoot,
        // Study search sends includefield=00081030,00080060 (StudyDescription, ModalitiesInStudy).
        qidoSupportsIncludeField: true,
        // Pixel data through WADO-RS frames (.../instances/{sop}/frames/{n}).
        imageRendering: 'wadors',
        // Thumbnails rendered in the browser from WADO-RS frames too: no /rendered needed.
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: false,
        // Follow BulkDataURI values found in the series metadata.
        bulkDataURI: {
          enabled: true,
        },
        // Accept: multipart/related; type=application/octet-stream; transfer-syntax=*
        // (parameters unquoted; servers should accept the quoted form too).
        omitQuotationForMultipartRequest: true,
        dicomUploadEnabled: false,
      },
    },
  ],
  httpErrorHandler: error => {
    console.warn('pacs DICOMweb request failed', error && error.status);
  },
};
