/**
 * vitpeft data loaders: one Dataset/Loader interface, decoding, transforms and augmentations, the papers' dataset
 * formats, and the embedded offline default datasets. See data-loaders/README.md.
 */
export * from './image';
export * from './csv';
export * from './decode';
export * from './limits';
export * from './encode';
export * from './dataset';
export * from './transforms';
export * from './augment';
export * from './presets';
export * from './probe';
export * from './embedded';
export {
  ENDMEMBERS,
  ENDMEMBER_SPECTRA,
  NATURAL_CLASSES,
  SATELLITE_CLASSES,
  renderNatural,
  renderSatellite,
  satelliteRgb,
  SATELLITE_COMPOSITES,
} from './embedded-render';
export type { SatelliteComposite, SatelliteRenderOptions } from './embedded-render';
export * from './formats/common';
export * from './formats/imagefolder';
export * from './formats/eurosat';
export * from './formats/fmow';
export * from './formats/fmow-sentinel';
export * from './formats/spacenet';
export * from './formats/wilds';
export * from './formats/vtab';
export * from './resample8';
export * from './embedded-beyond';
export { SCENE_COVERS, SCENE_SPECTRA, TEMPORAL_SITE_CLASSES, seasonalDryness, siteDates, renderSiteDates, renderBuildingChip } from './embedded-scenes';
export type { SiteDate, SiteImage, BuildingChip, Footprint, Acquisition } from './embedded-scenes';
export { HOSPITAL_STAINS, renderPathologyPatch } from './embedded-pathology';
export type { HospitalStain } from './embedded-pathology';
export { CAMERA_TRAP_SPECIES, cameraLocation, drawSpecies, animalPose, renderCameraTrapFrame } from './embedded-cameratrap';
export type { Species, CameraLocation, AnimalPose } from './embedded-cameratrap';
